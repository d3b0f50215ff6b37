-- GCRA for every limit of one request, in one call. Per key a STRING holding
-- the theoretical arrival time (TAT) in microseconds since the Unix epoch;
-- it expires when the bucket is full again. (`limits` has no GCRA; the key
-- has a `gcra:` part of its own so it never meets a `limits` counter.)
--
-- KEYS[i]      the TAT of item i
-- ARGV[2]      unused (the other scripts' clock argument)
-- ARGV[3+4(i-1)..]  item i: amount, window in microseconds, cost, peek (1) or hit (0)
--
-- Time is the server's (TIME): one clock for every client, so requests
-- reaching the server out of order cannot push a TAT into the future.
--
-- Returns the server's now in microseconds, then, per item: evaluated
-- (0/1), allowed (0/1), the TAT after the call.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local ITEMS = #KEYS
local out = { string.format('%.0f', now) }

local function arg(i, k)
  return tonumber(ARGV[2 + 4 * (i - 1) + k])
end

local function prepare(i) end

local function pending_key(i)
  return KEYS[i]
end

local function tat_of(i)
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then
    return now
  end
  return tat
end

-- What a cost adds to the TAT: cost * window / amount, in whole
-- microseconds, rounded UP (exact when it divides evenly, as in every usual
-- limit), so that a TAT is never earlier than the exact one and nothing is
-- admitted beyond the limit; any cost above 0 adds at least 1 us, or a
-- limit of more than one hit per microsecond would record nothing.
local function step(i, cost)
  local amount, window = arg(i, 1), arg(i, 2)
  if cost == 0 or amount == 0 then
    return 0
  end
  return math.max(1, math.ceil(cost * window / amount))
end

-- A cost passes if the backlog after it stays within the window:
-- backlog + cost * window / amount <= window, the increment exact (not
-- rounded): the backlog is built of rounded-up steps, so it is never
-- smaller than the exact one and the test never admits beyond the limit.
-- `extra` is the cost earlier items of the batch take from the same key.
local function fits(i, extra)
  local amount, window, cost = arg(i, 1), arg(i, 2), arg(i, 3)
  if cost > amount then
    return 0
  end
  if cost == 0 then
    return 1
  end
  local backlog = tat_of(i) + step(i, extra) - now
  if backlog + cost * window / amount <= window then
    return 1
  end
  return 0
end

local function commit(i)
  local grown = step(i, arg(i, 3))
  if grown > 0 then
    local tat = tat_of(i) + grown
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
  end
end

local function take(i)
  local allowed = fits(i, 0)
  if allowed == 1 then
    commit(i)
  end
  return allowed
end

local function report(i, evaluated, allowed)
  table.insert(out, evaluated)
  table.insert(out, allowed)
  table.insert(out, string.format('%.0f', tat_of(i)))
end

local function skipped()
  table.insert(out, 0)
  table.insert(out, 0)
  table.insert(out, '0')
end
