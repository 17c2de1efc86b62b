-- Resume: the schedule runs again from the next window.
if obj.spec.schedule == nil then
  obj.spec.schedule = {}
end
obj.spec.schedule.suspend = false
return obj
