-- valid_utf8(s): whether Python could decode s (strict UTF-8: no overlong forms, no
-- surrogates, nothing above U+10FFFF). Runs of ASCII are skipped by one pattern search.
local function valid_utf8(s)
  local i, n = 1, #s
  while true do
    i = string.find(s, '[\128-\255]', i)
    if not i then return true end
    local c = string.byte(s, i)
    local len, cp, least
    if c >= 194 and c <= 223 then len, cp, least = 1, c - 192, 128
    elseif c >= 224 and c <= 239 then len, cp, least = 2, c - 224, 2048
    elseif c >= 240 and c <= 244 then len, cp, least = 3, c - 240, 65536
    else return false end
    if i + len > n then return false end
    for j = i + 1, i + len do
      local b = string.byte(s, j)
      if b < 128 or b > 191 then return false end
      cp = cp * 64 + b - 128
    end
    if cp < least or cp > 1114111 or (cp >= 55296 and cp <= 57343) then return false end
    i = i + len + 1
  end
end
