-- GCRA for every limit of one request, in one call. Per key a STRING holding
-- the theoretical arrival time (TAT) in microseconds since the Unix epoch;
-- it expires when the bucket is full again. (`limits` has no GCRA; the key
-- has a `gcra:` part of its own so it never meets a `limits` counter.)
--
-- KEYS[i]      the TAT of item i
-- ARGV[1]      mode: 0 sequential, stop at the first refusal; 1 sequential,
--              no stop; 2 all or nothing; 3 peek every item
-- ARGV[2]      unused (kept so the argument layout matches the other scripts)
-- ARGV[3+4(i-1)..]  item i: amount, window in microseconds, cost, peek (1) or hit (0)
--
-- Time is the server's (TIME): one clock for every client, so requests
-- reaching the server out of order cannot push a TAT into the future.
--
-- Returns the server's now in microseconds, then, per item: evaluated
-- (0/1), allowed (0/1), the TAT after the call.
local mode = tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local n = #KEYS
local out = { string.format('%.0f', now) }

local function arg(i, k)
  return tonumber(ARGV[2 + 4 * (i - 1) + k])
end

local function tat_of(i, pending)
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') + (pending or 0)
  if tat < now then
    return now
  end
  return tat
end

-- A cost passes if the backlog after it stays within the window:
-- backlog + cost * window / amount <= window.
local function fits(i, tat)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  if cost > amount then
    return false
  end
  if cost == 0 then
    return true
  end
  return (tat - now) + cost * window / amount <= window
end

local function step(i)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  if cost == 0 or amount == 0 then
    return 0
  end
  return math.floor(cost * window / amount)
end

local function store(i, tat)
  redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
end

local function report(i, evaluated, allowed)
  table.insert(out, evaluated)
  table.insert(out, allowed)
  table.insert(out, string.format('%.0f', tat_of(i)))
end

if mode == 2 then
  local added, allowed, all = {}, {}, 1
  for i = 1, n do
    -- Earlier hits of this batch on the same key push its TAT further.
    local base = tat_of(i)
    local tat = base + (added[KEYS[i]] or 0)
    if fits(i, tat) then
      allowed[i] = 1
    else
      allowed[i] = 0
      all = 0
    end
    if arg(i, 4) == 0 then
      added[KEYS[i]] = (added[KEYS[i]] or 0) + step(i)
    end
  end
  if all == 1 then
    for i = 1, n do
      if arg(i, 4) == 0 and step(i) > 0 then
        store(i, tat_of(i) + step(i))
      end
    end
  end
  for i = 1, n do
    report(i, 1, allowed[i])
  end
  return out
end

local stopped = false
for i = 1, n do
  if stopped then
    table.insert(out, 0)
    table.insert(out, 0)
    table.insert(out, '0')
  else
    local tat = tat_of(i)
    local allowed = 0
    if fits(i, tat) then
      allowed = 1
      if mode ~= 3 and arg(i, 4) == 0 and step(i) > 0 then
        store(i, tat + step(i))
      end
    end
    report(i, 1, allowed)
    if allowed == 0 and mode == 0 then
      stopped = true
    end
  end
end
return out
