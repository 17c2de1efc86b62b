-- Argo CD health of a ReportBackend (reporting.report-operator.io/v1alpha1).
-- Ready=True: Healthy. Ready=False: Degraded, with the operator's reason and message
-- (CredentialsMissing, Unauthorized, TwoFactorRequired, Unreachable, InvalidSpec).
-- Progressing while the operator has not yet looked at the current spec.
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
  hs.message = "Waiting for the operator to check the backend"
  return hs
end
if obj.metadata.generation ~= nil and observed ~= nil and observed < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the changed spec (generation " .. obj.metadata.generation .. ")"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
