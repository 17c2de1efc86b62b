-- Suspend: no new reports are created; reports already running continue. Windows that fall
-- due meanwhile are recorded as missed.
if obj.spec.schedule == nil then
  obj.spec.schedule = {}
end
obj.spec.schedule.suspend = true
return obj
