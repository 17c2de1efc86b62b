-- Argo CD health of a ReportGenerator (reporting.report-operator.io/v1alpha1).
-- Ready=True (ReportReady, Scheduled): Healthy. Ready=False with reason ReportInProgress
-- (a ONETIME report being generated): Progressing. Any other Ready=False (BackendNotFound,
-- BackendNotReady, UnsupportedEventType, ReportFailed, LastReportFailed: the newest report
-- of a PERIODIC or ON_INVOICE generator FAILED, ...): Degraded. spec.schedule.suspend:
-- Suspended, unless Degraded. Progressing while the operator has not yet looked at the
-- current spec.
local hs = {}
local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
local observed = nil
if obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if observed == nil and ready ~= nil then
  observed = ready.observedGeneration
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the generator"
  return hs
end
if obj.metadata.generation ~= nil and observed ~= nil and observed < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to apply the changed spec (generation " .. obj.metadata.generation .. ")"
  return hs
end
if ready.status ~= "True" and ready.reason ~= "ReportInProgress" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end
if obj.spec ~= nil and obj.spec.schedule ~= nil and obj.spec.schedule.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.schedule.suspend is true: no new reports are created"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = ready.message or ready.reason
return hs
