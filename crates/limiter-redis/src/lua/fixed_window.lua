-- Fixed window for every limit of one request, in one call. Keys and values
-- are those of Python's `limits` 5.8: a STRING counter incremented with
-- INCRBY, its EXPIRE set when the hit created it.
--
-- KEYS[i]      the counter of item i (`LIMITS:LIMITER/.../<amount>/<multiples>/<granularity>`)
-- ARGV[2]      unused (the other scripts' clock argument)
-- ARGV[3+4(i-1)..]  item i: amount, window in seconds, cost, peek (1) or hit (0)
--
-- Returns, per item: evaluated (0/1), allowed (0/1), count after the call,
-- PTTL in milliseconds (-2 when there is no counter).
local ITEMS = #KEYS
local out = {}

local function arg(i, k)
  return tonumber(ARGV[2 + 4 * (i - 1) + k])
end

local function prepare(i) end

local function pending_key(i)
  return KEYS[i]
end

local function fits(i, extra)
  local amount, cost = arg(i, 1), arg(i, 3)
  local count = tonumber(redis.call('GET', KEYS[i]) or '0') + extra
  if cost <= amount and count + cost <= amount then
    return 1
  end
  return 0
end

-- As `limits`: a refused hit still counts, except a cost above the amount,
-- which can never pass.
local function take(i)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  if cost > amount then
    return 0
  end
  local count = redis.call('INCRBY', KEYS[i], cost)
  if count == cost then
    redis.call('EXPIRE', KEYS[i], window)
  end
  if count <= amount then
    return 1
  end
  return 0
end

local function commit(i)
  take(i)
end

local function report(i, evaluated, allowed)
  table.insert(out, evaluated)
  table.insert(out, allowed)
  table.insert(out, tonumber(redis.call('GET', KEYS[i]) or '0'))
  table.insert(out, redis.call('PTTL', KEYS[i]))
end

local function skipped()
  for _ = 1, 4 do
    table.insert(out, 0)
  end
end
