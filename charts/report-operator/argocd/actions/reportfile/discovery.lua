-- Argo CD actions of a ReportFile (reporting.report-operator.io/v1alpha1).
-- refresh-url: re-mint the download URL of a READY report (short-lived URLs expire), not
-- while an earlier refresh is still waiting for the operator.
local actions = {}
actions["refresh-url"] = {["iconClass"] = "fa fa-fw fa-redo", ["displayName"] = "Refresh download URL", ["disabled"] = true}
if obj.status == nil or obj.status.status ~= "READY" then
  return actions
end
local requested = nil
if obj.metadata.annotations ~= nil then
  requested = obj.metadata.annotations["reporting.report-operator.io/refresh-url"]
end
actions["refresh-url"]["disabled"] = requested ~= nil and requested ~= obj.status.lastUrlRefresh
return actions
