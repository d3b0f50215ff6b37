-- Fixed window for every limit of one request, in one call.
-- Keys and values are those of Python's `limits` 5.8: a STRING counter
-- incremented with INCRBY, its EXPIRE set when the hit created it.
--
-- KEYS[i]      the counter of item i (`LIMITS:LIMITER/.../<amount>/<multiples>/<granularity>`)
-- ARGV[1]      mode: 0 sequential, stop at the first refusal; 1 sequential,
--              no stop; 2 all or nothing; 3 peek every item
-- ARGV[2+4(i-1)..]  item i: amount, window in seconds, cost, peek (1) or hit (0)
--
-- Returns, per item: evaluated (0/1), allowed (0/1), count after the call,
-- PTTL in milliseconds (-2 when there is no counter).
local mode = tonumber(ARGV[1])
local n = #KEYS
local out = {}

local function arg(i, k)
  return tonumber(ARGV[1 + 4 * (i - 1) + k])
end

local function report(i, evaluated, allowed)
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  table.insert(out, evaluated)
  table.insert(out, allowed)
  table.insert(out, count)
  table.insert(out, redis.call('PTTL', KEYS[i]))
end

local function hit(i)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  -- A cost above the amount can never pass: refused and not counted.
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

local function fits(i, extra)
  local amount, cost = arg(i, 1), arg(i, 3)
  local count = tonumber(redis.call('GET', KEYS[i]) or '0') + extra
  if cost <= amount and count + cost <= amount then
    return 1
  end
  return 0
end

if mode == 2 then
  -- Test every item, counting what earlier items of the batch would add.
  local added, allowed, all = {}, {}, 1
  for i = 1, n do
    allowed[i] = fits(i, added[KEYS[i]] or 0)
    if allowed[i] == 0 then
      all = 0
    end
    if arg(i, 4) == 0 then
      added[KEYS[i]] = (added[KEYS[i]] or 0) + arg(i, 3)
    end
  end
  if all == 1 then
    for i = 1, n do
      if arg(i, 4) == 0 then
        hit(i)
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
    report(i, 0, 0)
  else
    local allowed
    if mode == 3 or arg(i, 4) == 1 then
      allowed = fits(i, 0)
    else
      allowed = hit(i)
    end
    report(i, 1, allowed)
    if allowed == 0 and mode == 0 then
      stopped = true
    end
  end
end
return out
