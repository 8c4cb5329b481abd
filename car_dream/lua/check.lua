-- Helpers of the check's scripts (after lib.lua).
local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end
