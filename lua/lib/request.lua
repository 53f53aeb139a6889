-- request.lua: whether a request is the one that made an order (its replay) or another body under its id.
--
-- An order keeps its request's fingerprint ('fp'). One brought back from the journal after Redis lost it keeps
-- '#' .. the SHA-1 (hex) the journal stores of it; '' when its journal rows were written before the journal kept
-- one (any body is then taken as the same request).
local function sameRequest(saved, fingerprint)
  if saved == fingerprint or saved == '' then
    return true
  end
  return string.sub(saved, 1, 1) == '#' and saved == '#' .. redis.sha1hex(fingerprint)
end
