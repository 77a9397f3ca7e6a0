-- wrk script for benches/load.sh (closed-loop throughput runs).
-- Environment: LOAD_MODE, LOAD_FILE (template or body file), LOAD_SEED (first counter value, unique mode).
-- (The mode is read from the environment at load time because wrk decides whether requests are static -- built
-- once, fastest -- by looking for a `request` function before `init` runs.)
--   get     plain GET of the URL's path
--   static  POST the file's bytes as application/json on every request (the "repeated values" body)
--   unique  POST the checkout template with fresh values on every request: a Luhn-valid 16-digit PAN, a German
--           IBAN with correct ISO 13616 check digits, an email, a phone number and a customer id, all derived
--           from a per-run counter (the same scheme as benches/load_gen's `fill`); a template with {R_*}
--           placeholders instead gets one of 4096 returning customers' email, IBAN, phone and id (one new value).
-- At the end it prints one JSON line (prefixed RESULT) with requests, duration and error counts.

local mode = os.getenv("LOAD_MODE") or "get"
local template, n

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

local function luhn_digit(s)
  local sum, len = 0, #s
  for i = len, 1, -1 do
    local d = s:byte(i) - 48
    if (len - i) % 2 == 0 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
  end
  return (10 - sum % 10) % 10
end

local function mod97(s)
  local acc = 0
  for i = 1, #s do acc = (acc * 10 + s:byte(i) - 48) % 97 end
  return acc
end

-- Returning customers of the one-new-value scenario: {R_EMAIL}, {R_IBAN}, {R_PHONE}, {R_CUST} are those of
-- customer k mod RETURNING (the same 4096 customers in every run, each paying with a new card, {PAN}).
local RETURNING = 4096

local function fill(k)
  -- Digits reversed: consecutive requests' cards spread over BINs and last fours as real customers' do (the
  -- vault budgets cards per BIN + last four).
  local pan = "4" .. string.reverse(string.format("%014.0f", k % 1e14))
  pan = pan .. luhn_digit(pan)
  local bban = string.format("37040044%010.0f", k % 1e10)
  local iban = string.format("DE%02d%s", 98 - mod97(bban .. "131400"), bban)
  local out = template
  out = out:gsub("{PAN}", pan)
  out = out:gsub("{EMAIL}", string.format("c%.0f@example.com", k))
  out = out:gsub("{IBAN}", iban)
  out = out:gsub("{PHONE}", string.format("+49 30 %08.0f", k % 1e8))
  -- Digit runs split by a letter: a subject id holding a card-like run is refused on detecting routes.
  out = out:gsub("{CUST}", string.format("cust-%06.0f-x%06.0f", math.floor(k / 1e6), k % 1e6))
  local r = k % RETURNING
  -- Account numbers spread over ten digits (a token keeps the shape of the value it stands for).
  local rbban = string.format("37040044%010.0f", 5e9 + r * 104729)
  out = out:gsub("{R_EMAIL}", string.format("returning.%06.0f@example.com", r))
  out = out:gsub("{R_IBAN}", string.format("DE%02d%s", 98 - mod97(rbban .. "131400"), rbban))
  out = out:gsub("{R_PHONE}", string.format("+49 40 %08.0f", 3e7 + r * 7919))
  out = out:gsub("{R_CUST}", string.format("cust-r%06.0f", r))
  return out
end

function init(args)
  if mode == "static" then
    wrk.method = "POST"
    wrk.body = read_file(os.getenv("LOAD_FILE"))
    wrk.headers["Content-Type"] = "application/json"
  elseif mode == "unique" then
    template = read_file(os.getenv("LOAD_FILE"))
    n = tonumber(os.getenv("LOAD_SEED")) or os.time()
  end
end

if mode == "unique" then
  function request()
    n = n + 1
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, fill(n))
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
