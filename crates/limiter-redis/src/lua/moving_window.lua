-- Moving window for every limit of one request, in one call, on the layout
-- of Python's `limits` 5.8: a LIST of hit times in float seconds, newest
-- first, trimmed to the amount, its EXPIRE refreshed by every accepted hit.
--
-- KEYS[i]      the log of item i
-- ARGV[2]      now, in seconds with a fraction (the limiter's clock, as `limits` passes it)
-- ARGV[3+4(i-1)..]  item i: amount, window in seconds, cost, peek (1) or hit (0)
--
-- Returns, per item: evaluated (0/1), allowed (0/1), hits in the window,
-- the oldest of them ('' if none), and the hit that blocks the cost ('' if none).
local now_text = ARGV[2]
local now = tonumber(now_text)
local ITEMS = #KEYS
local out = {}

local function arg(i, k)
  return tonumber(ARGV[2 + 4 * (i - 1) + k])
end

local function prepare(i) end

local function pending_key(i)
  return KEYS[i]
end

-- The `extra` newest hits are this batch's own, not yet pushed: all at `now`.
local function entry(i, index, extra)
  if index < extra then
    return now
  end
  local value = redis.call('LINDEX', KEYS[i], index - extra)
  if value then
    return tonumber(value)
  end
  return nil
end

local function fits(i, extra)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  if cost > amount then
    return 0
  end
  if cost == 0 then
    return 1
  end
  local blocking = entry(i, amount - cost, extra)
  if blocking and blocking >= now - window then
    return 0
  end
  return 1
end

local function commit(i)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  if cost == 0 then
    return
  end
  local left = cost
  while left > 0 do
    local batch = math.min(left, 5000)
    local times = {}
    for k = 1, batch do
      times[k] = now_text
    end
    redis.call('LPUSH', KEYS[i], unpack(times))
    left = left - batch
  end
  redis.call('LTRIM', KEYS[i], 0, amount - 1)
  redis.call('EXPIRE', KEYS[i], window)
end

local function take(i)
  local allowed = fits(i, 0)
  if allowed == 1 then
    commit(i)
  end
  return allowed
end

-- Hits in the window: binary search for the oldest entry still inside, as
-- `limits`' moving_window.lua does.
local function report(i, evaluated, allowed)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  local start = now - window
  local lo, hi, found = 0, math.min(redis.call('LLEN', KEYS[i]), amount) - 1, -1
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if tonumber(redis.call('LINDEX', KEYS[i], mid)) >= start then
      found = mid
      lo = mid + 1
    else
      hi = mid - 1
    end
  end
  table.insert(out, evaluated)
  table.insert(out, allowed)
  table.insert(out, found + 1)
  if found >= 0 then
    table.insert(out, redis.call('LINDEX', KEYS[i], found))
  else
    table.insert(out, '')
  end
  local blocking = ''
  if cost <= amount and cost > 0 then
    blocking = redis.call('LINDEX', KEYS[i], amount - cost) or ''
  end
  table.insert(out, blocking)
end

local function skipped()
  for _ = 1, 5 do
    table.insert(out, 0)
  end
end
