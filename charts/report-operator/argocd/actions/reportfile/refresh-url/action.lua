-- Refresh URL: a new value of the refresh-url annotation makes the operator fetch a fresh
-- download URL into the report's Secret.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["reporting.report-operator.io/refresh-url"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
