-- Argo CD actions of a ReportGenerator (reporting.report-operator.io/v1alpha1), offered
-- where they do something: only PERIODIC generators are scheduled by the operator.
-- run-now: make the latest window's report now (once per annotation value), not while an
-- earlier run-now is still waiting for the operator. suspend: only when not suspended;
-- resume: only when suspended.
local actions = {}
actions["run-now"] = {["iconClass"] = "fa fa-fw fa-play-circle", ["displayName"] = "Run now", ["disabled"] = true}
actions["suspend"] = {["iconClass"] = "fa fa-fw fa-pause", ["displayName"] = "Suspend", ["disabled"] = true}
actions["resume"] = {["iconClass"] = "fa fa-fw fa-play", ["displayName"] = "Resume", ["disabled"] = true}
if obj.spec == nil or obj.spec.eventType ~= "PERIODIC" then
  return actions
end
local requested = nil
if obj.metadata.annotations ~= nil then
  requested = obj.metadata.annotations["reporting.report-operator.io/run-now"]
end
local served = nil
if obj.status ~= nil then
  served = obj.status.lastRunNow
end
actions["run-now"]["disabled"] = requested ~= nil and requested ~= served
local suspended = obj.spec.schedule ~= nil and obj.spec.schedule.suspend == true
actions["suspend"]["disabled"] = suspended
actions["resume"]["disabled"] = not suspended
return actions
