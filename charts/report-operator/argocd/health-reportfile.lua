-- Argo CD health of a ReportFile (reporting.report-operator.io/v1alpha1).
-- status.status READY: Healthy, also when the Ready condition is False with reason UrlExpired
-- (the report exists; only its short-lived download URL has to be re-minted). FAILED:
-- Degraded, with the backend's reason. IN_PROGRESS or no status yet: Progressing.
local hs = {}
local ready = nil
local state = nil
if obj.status ~= nil then
  state = obj.status.status
  if obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == "Ready" then
        ready = c
      end
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
if obj.metadata.generation ~= nil and observed ~= nil and observed < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to look at generation " .. obj.metadata.generation
  return hs
end
if state == "READY" then
  hs.status = "Healthy"
  if ready ~= nil and ready.status == "False" and ready.reason == "UrlExpired" then
    hs.message = "The report is READY, but its download URL expired: change the annotation reporting.report-operator.io/refresh-url to get a new one (" .. (ready.message or "") .. ")"
  elseif ready ~= nil and ready.message ~= nil then
    hs.message = ready.message
  else
    hs.message = "The report is READY"
  end
  return hs
end
if state == "FAILED" then
  hs.status = "Degraded"
  if obj.status.failedReason ~= nil then
    hs.message = "The report FAILED: " .. obj.status.failedReason
  elseif ready ~= nil and ready.message ~= nil then
    hs.message = "The report FAILED: " .. ready.message
  else
    hs.message = "The report FAILED"
  end
  return hs
end
hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil then
  hs.message = (ready.reason or "InProgress") .. ": " .. ready.message
else
  hs.message = "Waiting for the operator to submit the report"
end
return hs
