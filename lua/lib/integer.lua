-- lib/integer.lua: integers as text, cheaply. Not a script of its own: scripts include it where they say
-- `--!include integer` (see InventoryScripts.load).
--
-- Lua 5.1 turns a number into text with printf's floating-point formatting ('%.14g' for `..` and tostring, '%.17g'
-- for an argument of redis.call), about a microsecond each; reserve.lua made a dozen such conversions per hold.
-- '%d' writes the digits of any integer the scripts handle (|n| < 2^53: counts, quantities, Unix ms) at a fraction
-- of the cost: the same text as '%.17g', and exact where '%.14g' went to exponent form (10^14 and more, which a
-- reader of the text took for 0). loadtest/RESULTS.md, session 16. And a negated zero is '0' ('%.17g' writes -0 as
-- '-0', which Redis refuses as an integer: HINCRBY of `-n` failed its script when n was 0), so every decrement a
-- script passes to Redis goes through `int`.

local function int(n)
  return string.format('%d', n)
end
