-- wrk script: reservations of one hot stock item, each request with a new orderId.
--
--   wrk -t2 -c64 -d15s --latency -s loadtest/wrk/reserve_hot.lua http://127.0.0.1:8080/v1/reservations
--
-- Environment:
--   WRK_BIZ     bizId of the hot item (default "loadtest"; a-z 0-9 _ -)
--   WRK_SKU     skuId of the hot item (default 1)
--   WRK_RUN_ID  prefix that makes orderIds unique across runs (default: hex time + random bytes)
--
-- orderId = "wrk-<run>-<thread>-<n>": the run prefix and the thread number are handed to each thread in
-- setup(), n counts per thread, so ids never repeat across threads or runs (and the orderId stays within
-- the API's 64 characters of A-Za-z0-9._:-).
--
-- done() prints the responses counted by HTTP status and one machine-readable line for scripts:
--   wrk-status-counts {"201":123456,"409":12}

local biz = os.getenv("WRK_BIZ") or "loadtest"
local sku = os.getenv("WRK_SKU") or "1"
-- wrk only prints an error raised while loading a script and then runs plain GETs; exit instead.
local function fail(message)
   io.stderr:write("reserve_hot.lua: " .. message .. "\n")
   os.exit(2)
end
if not (biz:match("^[a-z0-9_-]+$") and #biz <= 32) then
   fail("WRK_BIZ must be 1-32 of a-z 0-9 _ -, got: " .. biz)
end
if not sku:match("^[1-9][0-9]*$") then
   fail("WRK_SKU must be a positive integer, got: " .. sku)
end

-- Main (setup/done) environment only: wrk keeps a separate Lua state per thread.
local threads = {}
local shared_run_id

local function random_hex(nbytes)
   local f = io.open("/dev/urandom", "rb")
   if f then
      local bytes = f:read(nbytes)
      f:close()
      return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
   end
   math.randomseed(os.time() + math.floor(os.clock() * 1000000))
   return string.format("%06x", math.random(0, 0xffffff))
end

function setup(thread)
   if not shared_run_id then
      shared_run_id = os.getenv("WRK_RUN_ID") or string.format("%x%s", os.time(), random_hex(3))
      if not (shared_run_id:match("^[A-Za-z0-9._:-]+$") and #shared_run_id <= 32) then
         fail("WRK_RUN_ID must be 1-32 of A-Za-z0-9._:-, got: " .. shared_run_id)
      end
   end
   table.insert(threads, thread)
   thread:set("run_id", shared_run_id)
   thread:set("thread_id", #threads)
end

-- Per-thread state (globals, so done() can read them through thread:get).
counter = 0
statuses = {}
local body_prefix, body_suffix

function init(args)
   wrk.method = "POST"
   if wrk.path == nil or wrk.path == "" or wrk.path == "/" then
      wrk.path = "/v1/reservations"
   end
   wrk.headers["Content-Type"] = "application/json"
   body_prefix = '{"orderId":"wrk-' .. run_id .. "-" .. thread_id .. "-"
   body_suffix = '","bizId":"' .. biz .. '","items":[{"skuId":' .. sku .. ',"quantity":1}]}'
end

function request()
   counter = counter + 1
   return wrk.format(nil, nil, nil, body_prefix .. counter .. body_suffix)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local totals, codes, sent = {}, {}, 0
   for _, thread in ipairs(threads) do
      sent = sent + (thread:get("counter") or 0)
      for code, n in pairs(thread:get("statuses") or {}) do
         code = tonumber(code)
         if not totals[code] then
            table.insert(codes, code)
            totals[code] = 0
         end
         totals[code] = totals[code] + n
      end
   end
   table.sort(codes)
   local parts = {}
   io.write(string.format("orderIds: wrk-%s-<thread>-<n>, %d requests built\n", shared_run_id or "?", sent))
   io.write("responses by status:\n")
   for _, code in ipairs(codes) do
      io.write(string.format("  %d: %d\n", code, totals[code]))
      table.insert(parts, string.format('"%d":%d', code, totals[code]))
   end
   io.write("wrk-status-counts {" .. table.concat(parts, ",") .. "}\n")
end
