-- Run now: a new value of the run-now annotation makes the operator create the latest
-- window's report at once, even while the generator is suspended.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["reporting.report-operator.io/run-now"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
