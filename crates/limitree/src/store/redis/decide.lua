-- limitree: decide a batch of chains, each atomically and all-or-nothing, in
-- one script call (see store/redis/mod.rs and batch.rs).
--
-- This is `MemoryStore::decide_chain` + `ChainOutcome::combine` in Lua, with the
-- four algorithms of `algo/*.rs` transcribed function by function. Every number
-- is an integer below 2^53 (the policy guarantees it), so Lua's doubles hold them
-- exactly; integer division goes through `idiv`, never a bare `/`.
--
-- The decisions of a batch run one after the other at the same `now`, each
-- seeing what the ones before it charged: exactly as if they had been separate
-- calls in the same microsecond. A bucket's state is loaded once per batch and
-- kept up to date as decisions charge it, and written once, when the batch is
-- done (`save_dirty`).
--
-- The call (the same layout as store/redis/protocol.rs, which builds and reads
-- it; the constants below are checked against that file by a test). Two index
-- spaces, both 1-based: a key index is a position in KEYS, a spec index a
-- position in `specs` (ARGV[3]).
--
-- KEYS     every bucket the batch touches, once (one tree: one hash tag, one slot)
-- ARGV[1]  now in microseconds, or "" to read Redis TIME (production)
-- ARGV[2]  TTL slack in milliseconds: 0 in production; tests on a manual clock
--          pass a large value so keys never expire in real time before their
--          state goes idle in test time
-- ARGV[3]  specs: every distinct level spec the batch uses, SPEC_LEN bytes
--          each (SPEC_FORMAT): algorithm code (sl|sw|gc|fw), limit, window,
--          burst (doubles), shadow (1 or 0). An override's limits are a spec
--          of their own.
-- ARGV[4]  per key index, the spec index of that bucket (u16 LE)
-- ARGV[5]  the decisions, one after the other: a DECISION_HEADER_LEN header
--          (mode MODE_COMMIT|MODE_DRY_RUN|MODE_PEEK, number of levels n, number
--          of shared parents s (fair sharing, see `evaluate_shared`)), then per
--          shared parent DECISION_SHARE_LEN bytes: its level (1-based) and its
--          guarantee's key index (u16 LE, 0: none), then
--          per level, root first, DECISION_LEVEL_LEN bytes: its key index (u16
--          LE) and its bucket's cost (u32 LE). Each bucket is charged its own
--          cost; a level of cost 0 is probed with 0 (it always fits) and never
--          charged. A peek probes every level with 1 and charges nothing. No
--          level holds more than 10^9, so a larger cost is sent as 2^32-1 and
--          answered the same.
-- Packed rather than one argument per number: each argument costs Redis a
-- parse and an object, and the script a Lua string to convert (strtod).
--
-- Returns one binary string: now (a little-endian double), then per decision,
-- per level, root first, a record of
--   flags  one byte: FLAG_ALLOWED, FLAG_INSUFFICIENT, FLAG_CHARGED, FLAG_RETRY
--   len    one byte: the length of the state that follows
--   state  the bucket's state as this decision saw it, encoded as stored (the
--          key's value, or a sliding_log's summary; empty: a fresh bucket)
--   guarantee  (FLAG_SHARED only: a shared parent, whose state above is its
--          pool's) one byte of length, then the guarantee's state
--   retry  (FLAG_RETRY only: a sliding_log denial) the wait until the probed
--          cost fits, a little-endian double
-- The script decides (and charges); the client computes each level's numbers
-- (available, remaining, reset and retry times) from the state with the same
-- algorithm code as the memory store (protocol.rs). Computing them here cost
-- Redis more than deciding: the calls, then packing four doubles per level.
-- Only a sliding_log's retry time needs the log itself, so it is computed
-- here. A level is evaluated once for every decision of the batch that sees
-- the same state (see `memo_flags`).

------------------------------------------------------------------ protocol
-- One `local NAME = value` per line: protocol.rs's test reads them.
local MODE_COMMIT = string.byte('c')
local MODE_DRY_RUN = string.byte('d') -- neither peek nor commit: charges nothing
local MODE_PEEK = string.byte('p')
local FLAG_ALLOWED = 1
local FLAG_INSUFFICIENT = 2
local FLAG_CHARGED = 4
local FLAG_RETRY = 8
local FLAG_SHARED = 16
local SPEC_FORMAT = '<c2dddB'
local SPEC_LEN = 27
local SUMMARY_FORMAT = '<I4I4ddI4d'
local SUMMARY_LEN = 36
local DECISION_HEADER_LEN = 3
local DECISION_SHARE_LEN = 3
local DECISION_LEVEL_LEN = 6

-- floor(a / b) for non-negative integers, exact: the double quotient can round
-- up across an integer when b is large, so correct it by one either way.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function imod(a, b)
  return a - idiv(a, b) * b
end

-- Integers as Redis wants them in arguments: '%d' formats a C long (exact
-- below 2^53), where tostring would print 1.7e+15 for large numbers and
-- '%.0f' goes through the libc's floating-point printer (measured as the most
-- expensive part of a save).
local function int(n)
  return string.format('%d', n)
end

local function sub0(a, b)
  if a > b then return a - b end
  return 0
end

-- Each algorithm is built by algos.<code>() the first time a batch uses it (a
-- batch pays for the closures of the algorithms it uses, not of all four):
-- suffix (of the key holding the state, which the batch reads up front);
-- load(key, now, spec, value of key..suffix, key..suffix) -> state;
-- available(s, now, spec); charge(s, now, spec, cost), in place;
-- encode(s) -> the state as stored; save(key, s, ttl), ttl in milliseconds or
-- nil (idle: delete); idle_at(s, spec);
-- sliding_log only: retry_after(s, now, spec, cost). Same names and meaning as
-- algo/mod.rs. Every loaded state carries `raw`, its encoding as stored ('' for
-- a fresh bucket) for the reply; a charge clears it (see `raw_of`).
--
-- fixed_window, sliding_window and gcra states are little-endian doubles
-- (integers below 2^53, exact): `struct` packs and unpacks them in C, where
-- decimal text cost a pattern match and a number parse per field on load and a
-- printf per field on save. A value of any other length (nothing, or a value
-- someone else wrote) is a fresh bucket, and is reported as one.
local algos = {}

-- Stores a state with a TTL in milliseconds until it goes idle, or deletes it
-- if idle (ttl nil: idle is indistinguishable from fresh); returns what is
-- stored now.
local ttl_texts = {} -- a batch's buckets mostly share a few TTLs
local function ttl_text(ttl)
  local text = ttl_texts[ttl]
  if not text then
    text = int(ttl)
    ttl_texts[ttl] = text
  end
  return text
end
local function save_string(key, value, ttl)
  if ttl then
    redis.call('SET', key, value, 'PX', ttl_text(ttl))
    return value
  end
  redis.call('DEL', key)
  return ''
end

---------------------------------------------------------------- fixed_window
-- State (start, count) (algo/fixed_window.rs), and `last`.
local FW_FORMAT, FW_LEN = '<ddd', 24
function algos.fw()
  local fw = {}
  fw.suffix = ''
  function fw.load(_, _, _, v)
    if v and #v == FW_LEN then
      local start, count, last = struct.unpack(FW_FORMAT, v)
      return { start = start, count = count, last = last, raw = v }
    end
    return { start = 0, count = 0, last = 0, raw = '' }
  end
  function fw.available(s, _, spec)
    if spec.start > s.start then return spec.limit end
    return sub0(spec.limit, s.count)
  end
  function fw.charge(s, now, spec, cost)
    s.last = now
    local start = spec.start
    if start > s.start then
      s.start, s.count = start, cost
    else
      s.count = s.count + cost
    end
  end
  function fw.idle_at(s, spec)
    if s.count == 0 then return 0 end
    return s.start + spec.window
  end
  function fw.encode(s)
    return struct.pack(FW_FORMAT, s.start, s.count, s.last)
  end
  function fw.save(key, s, ttl)
    s.raw = save_string(key, fw.encode(s), ttl)
  end
  return fw
end

------------------------------------------------------------------------ gcra
-- State (tat, interval) (algo/gcra.rs): the theoretical arrival time and the
-- emission interval it was pushed by. A reload that changes the interval (a
-- new limit or window) rescales the debt when the bucket is next loaded, as
-- algo/gcra.rs `rescale`: what is still owed, in whole units (a partly repaid
-- unit counts as owed), at the new interval, so a lower limit never admits
-- early. The rescaled state is saved with the batch (`moved`), as the memory
-- store keeps it.
local GC_FORMAT, GC_LEN = '<ddd', 24
function algos.gc()
  local gc = {}
  gc.suffix = ''
  function gc.load(_, now, spec, v)
    if not v or #v ~= GC_LEN then return { tat = 0, iv = 0, last = 0, raw = '' } end
    local tat, iv, last = struct.unpack(GC_FORMAT, v)
    local t = spec.interval
    if iv == 0 or iv == t or tat <= now then return { tat = tat, iv = iv, last = last, raw = v } end
    local owed = idiv(tat - now + iv - 1, iv)
    return { tat = now + owed * t, iv = t, last = last, moved = true }
  end
  function gc.available(s, now, spec)
    local t = spec.interval
    local base = math.max(s.tat, now)
    return idiv(sub0(now + spec.burst * t, base), t)
  end
  function gc.charge(s, now, spec, cost)
    local t = spec.interval
    s.tat = math.max(s.tat, now) + cost * t
    s.iv = t
    s.last = now
  end
  function gc.idle_at(s, _)
    return s.tat
  end
  function gc.encode(s)
    return struct.pack(GC_FORMAT, s.tat, s.iv, s.last)
  end
  function gc.save(key, s, ttl)
    s.raw = save_string(key, gc.encode(s), ttl)
  end
  return gc
end

-------------------------------------------------------------- sliding_window
-- State (start, curr, prev) (algo/sliding_window.rs), and `last`.
local SW_FORMAT, SW_LEN = '<dddd', 32
function algos.sw()
  local sw = {}
  sw.suffix = ''
  function sw.load(_, _, _, v)
    if v and #v == SW_LEN then
      local start, curr, prev, last = struct.unpack(SW_FORMAT, v)
      return { start = start, curr = curr, prev = prev, last = last, raw = v }
    end
    return { start = 0, curr = 0, prev = 0, last = 0, raw = '' }
  end
  -- (window start, elapsed in it, prev, curr) as seen from now.
  local function sw_view(s, now, spec)
    local w = spec.window
    local start = spec.start
    if start == s.start then
      return start, now - start, s.prev, s.curr
    elseif start == s.start + w then
      return start, now - start, s.curr, 0
    elseif start > s.start then
      return start, now - start, 0, 0
    end
    return s.start, 0, s.prev, s.curr
  end
  function sw.available(s, now, spec)
    local _, e, prev, curr = sw_view(s, now, spec)
    local w = spec.window
    -- limit·W − (prev·(W−e) + curr·W), kept as two terms each below 2^53.
    if curr >= spec.limit then return 0 end
    local room = (spec.limit - curr) * w - prev * (w - e)
    if room < 0 then return 0 end
    return idiv(room, w)
  end
  function sw.charge(s, now, spec, cost)
    local start, _, prev, curr = sw_view(s, now, spec)
    s.start, s.curr, s.prev, s.last = start, curr + cost, prev, now
  end
  sw.counts = sw_view -- for a carry (`carry_layout`)
  function sw.idle_at(s, spec)
    if s.curr > 0 then
      return s.start + 2 * spec.window
    elseif s.prev > 0 then
      return s.start + spec.window
    end
    return 0
  end
  function sw.encode(s)
    return struct.pack(SW_FORMAT, s.start, s.curr, s.prev, s.last)
  end
  function sw.save(key, s, ttl)
    s.raw = save_string(key, sw.encode(s), ttl)
  end
  return sw
end

----------------------------------------------------------------- sliding_log
-- A sorted set scored by admission time (algo/sliding_log.rs). Members are
-- "<ts>-<n>" for one unit or "<ts>-<n>:<units>", where n counts the entries
-- already at that score: entries leave only by whole scores (pruning), so n is
-- unique and two admissions in the same microsecond never collapse into one.
-- Live entries each hold at least one unit and their units never exceed the
-- limit, so a bucket holds at most `limit` entries once pruned.
--
-- Beside it, "<key>:m" summarises the log so that a decision need not touch the
-- set at all unless an entry has expired or one is added: entries, units beyond
-- one per entry, oldest and newest admission time, entries at the newest
-- time (the next n) and `last`, packed in 36 bytes: the counts as 32-bit
-- integers (all at most `limit`), the times as doubles (integers below 2^53,
-- exact).
-- `struct` unpacks them in C; parsing text in Lua would cost about what the
-- four set commands it replaces do. Same TTL as the set. A missing or
-- malformed summary (a bucket written by limitree 0.1, which kept the extra
-- units in "<key>:u", or a summary evicted apart from its set) is rebuilt from
-- the set; a summary whose set vanished is corrected at the next expiry.
-- The summary key is not in KEYS: it shares its bucket's hash tag, so it is in
-- the same slot on a Cluster (tested), and declaring it cost Redis 3-7 % more
-- per decision (one more argument per bucket; BENCHMARKS.md).
function algos.sl()
  local sl = {}
  local function sl_units(member)
    return tonumber(string.match(member, ':(%d+)$')) or 1
  end
  -- A member's admission time: its score, which every member starts with
  -- (cheaper than WITHSCORES, which has Redis print the score as a double for
  -- this script to parse back). Arguments below are strings for the same reason:
  -- a number argument costs a "%.14g" printf.
  local function sl_ts(member)
    return tonumber(string.match(member, '^(%d+)%-'))
  end
  -- Reads count, extra, oldest, newest and seq back from the set itself.
  local function sl_rebuild(s)
    local count, extra, oldest, newest, seq = 0, 0, 0, 0, 0
    for _, member in ipairs(redis.call('ZRANGE', s.key, 0, -1)) do
      local ts = sl_ts(member)
      if count == 0 then oldest = ts end
      if ts == newest then seq = seq + 1 else newest, seq = ts, 1 end
      count = count + 1
      extra = extra + sl_units(member) - 1
    end
    s.count, s.extra, s.oldest, s.newest, s.seq = count, extra, oldest, newest, seq
    s.last = newest -- the log's last entry: the best a rebuilt summary knows
  end
  -- Writes the summary; it is the state the reply carries.
  local function sl_write_meta(s, ...)
    s.raw = sl.encode(s)
    redis.call('SET', s.mkey, s.raw, ...)
  end
  local function sl_del_meta(s)
    redis.call('DEL', s.mkey)
    s.raw = ''
  end
  sl.suffix = ':m'
  function sl.load(key, now, spec, v, mkey)
    -- Every field up front: a table grown field by field is rehashed as it
    -- grows.
    local s = {
      key = key, mkey = mkey, count = 0, extra = 0, oldest = 0, newest = 0, seq = 0, last = 0,
      raw = '',
    }
    local cutoff = now - spec.window
    if v and #v == SUMMARY_LEN then
      s.count, s.extra, s.oldest, s.newest, s.seq, s.last = struct.unpack(SUMMARY_FORMAT, v)
      s.raw = v
      if s.count > 0 and s.oldest <= cutoff then
        -- Expired entries (ts + window <= now) can no longer change any answer:
        -- drop them first, as the memory store prunes under its lock
        -- (algo::prune), so a bucket that only sees denials does not keep them.
        local cut = int(cutoff)
        if s.extra > 0 then
          for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', cut)) do
            s.extra = s.extra - (sl_units(member) - 1)
          end
        end
        redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
        s.count = redis.call('ZCARD', key)
        if s.count > 0 then
          s.oldest = sl_ts(redis.call('ZRANGE', key, 0, 0)[1])
          sl_write_meta(s, 'KEEPTTL')
        else
          s.extra, s.oldest, s.newest, s.seq = 0, 0, 0, 0
          sl_del_meta(s)
        end
      end
    elseif redis.call('EXISTS', key) == 1 then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', int(cutoff))
      sl_rebuild(s)
      -- 0.1's side key: its units are counted from the members now.
      redis.call('DEL', key .. ':u')
      if s.count > 0 then
        local pttl = redis.call('PTTL', key)
        if pttl > 0 then sl_write_meta(s, 'PX', pttl) else sl_write_meta(s) end
      else
        sl_del_meta(s)
      end
    elseif v then
      sl_del_meta(s) -- a damaged summary of an empty log
    end
    return s
  end
  function sl.available(s, _, spec)
    return sub0(spec.limit, s.count + s.extra)
  end
  -- The oldest live entries leave one by one; `cost` fits once the units left
  -- free enough. With one unit per entry that is the must_free-th oldest.
  function sl.retry_after(s, now, spec, cost)
    local must_free = sub0(s.count + s.extra + cost, spec.limit)
    if s.count == 0 then return spec.window end
    if s.extra == 0 then
      local index = math.max(must_free, 1)
      if index > s.count then return spec.window end
      if index == 1 then return sub0(s.oldest + spec.window, now) end
      -- Charges only append (at or after the newest time), so the time at a
      -- rank stays valid for the rest of the batch.
      local ranks = s.ranks
      if not ranks then -- false until a rank is looked up
        ranks = {}
        s.ranks = ranks
      end
      local ts = ranks[index]
      if not ts then
        local rank = int(index - 1)
        ts = sl_ts(redis.call('ZRANGE', s.key, rank, rank)[1])
        ranks[index] = ts
      end
      return sub0(ts + spec.window, now)
    end
    local raw = redis.call('ZRANGE', s.key, 0, -1)
    local freed = 0
    for _, member in ipairs(raw) do
      freed = freed + sl_units(member)
      if freed >= must_free then
        return sub0(sl_ts(member) + spec.window, now)
      end
    end
    return spec.window
  end
  function sl.charge(s, now, _, cost)
    if cost == 0 then return end
    -- At the newest entry's time if the clock went backwards (as the Rust log).
    local ts, n = now, 0
    if s.count > 0 then
      if s.newest >= now then ts, n = s.newest, s.seq end
    else
      s.oldest = now
    end
    local ts_text = int(ts)
    local member = ts_text .. '-' .. int(n)
    if cost ~= 1 then
      member = member .. ':' .. int(cost)
      s.extra = s.extra + cost - 1
    end
    redis.call('ZADD', s.key, ts_text, member)
    s.count = s.count + 1
    s.newest, s.seq, s.last = ts, n + 1, now
  end
  -- A carry (`carry_layout`): the live (ts, units) of the log, one per
  -- time, oldest first, added into `by_ts` (units by time)…
  function sl.add_entries(s, by_ts)
    if s.count == 0 then return end
    for _, member in ipairs(redis.call('ZRANGE', s.key, 0, -1)) do
      local ts = sl_ts(member)
      by_ts[ts] = (by_ts[ts] or 0) + sl_units(member)
    end
  end
  -- … and `units` logged at `ts` (in the past: its own member, named apart
  -- from a charge's "<ts>-<n>" so neither ever collides with the other).
  local carried = 0
  function sl.insert(s, now, ts, units)
    local ts_text = int(ts)
    local member = ts_text .. '-c' .. int(now) .. '.' .. int(carried)
    carried = carried + 1
    if units ~= 1 then member = member .. ':' .. int(units) end
    redis.call('ZADD', s.key, ts_text, member)
    if s.count == 0 then
      s.oldest, s.newest, s.seq = ts, ts, 0
    else
      if ts < s.oldest then s.oldest = ts end
      if ts > s.newest then s.newest, s.seq = ts, 0 end
    end
    s.count = s.count + 1
    s.extra = s.extra + units - 1
  end
  function sl.idle_at(s, spec)
    if s.count == 0 then return 0 end
    return s.newest + spec.window
  end
  function sl.encode(s)
    return struct.pack(SUMMARY_FORMAT, s.count, s.extra, s.oldest, s.newest, s.seq, s.last)
  end
  function sl.save(key, s, ttl)
    if ttl then
      local px = ttl_text(ttl)
      redis.call('PEXPIRE', key, px)
      sl_write_meta(s, 'PX', px)
    else
      redis.call('DEL', key, s.mkey)
      s.raw = ''
    end
  end
  return sl
end

------------------------------------------------------------------ the batch
-- ARGV[1]: Redis' clock, unless a test passes its own.
local function read_now(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end

-- ARGV[3]: the specs, each with its algorithm (built once per batch).
-- Also the numbers every decision of the batch would compute again from `now`:
-- the current window's start, and gcra's emission interval.
local function read_specs(packed, now)
  local specs, built = {}, {}
  for pos = 1, #packed, SPEC_LEN do
    local code, limit, window, burst, shadow = struct.unpack(SPEC_FORMAT, packed, pos)
    local alg = built[code]
    if not alg then
      alg = algos[code]()
      built[code] = alg
    end
    local capacity, interval = limit, 0
    if code == 'gc' then
      capacity = burst
      local l = math.max(limit, 1)
      interval = idiv(window + l - 1, l)
    end
    local limits = {
      limit = limit, window = window, burst = burst,
      start = now - imod(now, window), interval = interval,
    }
    specs[#specs + 1] = {
      alg = alg, code = code, limits = limits, shadow = shadow == 1, capacity = capacity,
    }
  end
  return specs
end

local now = read_now(ARGV[1])
local slack = tonumber(ARGV[2])
local specs = read_specs(ARGV[3], now)

-- By key index: the bucket's spec (ARGV[4]), and the key holding its state
-- (the key itself, or a sliding_log's summary).
local bucket_spec, state_keys = {}, {}
local packed = ARGV[4]
for k = 1, #KEYS do
  local lo, hi = string.byte(packed, 2 * k - 1, 2 * k)
  local spec = specs[lo + 256 * hi]
  bucket_spec[k] = spec
  local suffix = spec.alg.suffix
  if suffix == '' then state_keys[k] = KEYS[k] else state_keys[k] = KEYS[k] .. suffix end
end
-- Every bucket's state, read with one MGET: each bucket of the batch is
-- loaded, and none is written before it is loaded, so what this reads is what
-- a GET at load time would.
local stored = redis.call('MGET', unpack(state_keys))

-- By key index, loaded on first use and kept up to date as decisions charge:
-- each bucket is loaded once per batch.
local states = {}
-- By key index, while the bucket's state is unchanged: the probe it was last
-- evaluated for, whether that fit, whether it denies the chain (no room and not
-- shadow), and its record's flags and retry time (false: none); the state in
-- the record is `raw_of`'s. In a saturated batch most decisions see buckets no
-- earlier decision of the batch charged, so most levels are answered from
-- here. Parallel arrays rather than a table per entry: tables are what costs
-- here.
local memo_probe, memo_allowed, memo_denies, memo_flags, memo_retry = {}, {}, {}, {}, {}

-- Per key index: how many times the batch charged it (a shared parent's memo
-- below is valid while neither of its parts changed), and the key indexes to
-- save when the batch is done (charged, or changed by their load), in order.
local charges = {}
local dirty, dirty_len = {}, 0

-- Has bucket k saved when the batch is done (once, however often it changes).
local function mark_dirty(k)
  if not charges[k] then
    charges[k] = 0
    dirty_len = dirty_len + 1
    dirty[dirty_len] = k
  end
end

-- Bucket k's state as stored, for the reply: encoded again only after a
-- charge changed it (most charged buckets are never reported again).
local function raw_of(k)
  local s = states[k]
  local raw = s.raw
  if not raw then
    raw = bucket_spec[k].alg.encode(s)
    s.raw = raw
  end
  return raw
end

-- Bucket k's state, loaded on first use (a load that changed it, as a gcra
-- rescale, has it saved; its `raw` is then encoded when it is reported).
local function load(k)
  local s = states[k]
  if not s then
    local spec = bucket_spec[k]
    s = spec.alg.load(KEYS[k], now, spec.limits, stored[k], state_keys[k])
    states[k] = s
    if s.moved then mark_dirty(k) end
  end
  return s
end

-- Evaluates bucket k for `probe`, charging nothing, into the memo.
local function evaluate(k, probe)
  local spec = bucket_spec[k]
  local alg, limits = spec.alg, spec.limits
  local s = states[k] or load(k)
  local available = alg.available(s, now, limits)
  local insufficient = probe > spec.capacity
  local allowed = (not insufficient) and probe <= available
  local flags, retry = 0, false
  if allowed then
    flags = FLAG_ALLOWED
  elseif insufficient then
    flags = FLAG_INSUFFICIENT
  elseif alg.retry_after then
    flags = FLAG_RETRY
    retry = struct.pack('<d', alg.retry_after(s, now, limits, probe))
  end
  memo_probe[k], memo_allowed[k] = probe, allowed
  memo_denies[k] = not allowed and not spec.shadow
  memo_flags[k], memo_retry[k] = flags, retry
end

-- decision.rs `share_retry`, step by step: the least over splits k (from the
-- guarantee) of the later of the guarantee's wait for k and the pool's for
-- cost - k, found where the two cross.
local function share_retry(cost, ga, gcap, g_wait, pa, pcap, p_wait)
  local function wg(k)
    if k <= ga then return 0 end
    return g_wait(k)
  end
  local function wp(k)
    if k <= pa then return 0 end
    return p_wait(k)
  end
  local lo, hi = sub0(cost, pcap), math.min(cost, gcap)
  local a, b = lo, hi + 1
  while a < b do
    local m = a + idiv(b - a, 2)
    if wg(m) >= wp(cost - m) then b = m else a = m + 1 end
  end
  if a > hi then return wp(cost - hi) end
  local at = wg(a)
  if a == lo then return at end
  return math.min(at, wp(cost - (a - 1)))
end

-- A shared parent's last evaluation per (pool, guarantee) pair: the probe,
-- the parts' charge counts it saw, and its results. In a saturated batch most
-- decisions see parts no earlier decision charged.
local shared_memo = {}

-- A shared parent (fair sharing, decision.rs `share_verdict`): the pool kp
-- and the request's guarantee kg (0: none), evaluated for `probe` together —
-- room iff guarantee plus pool can take it, the guarantee giving first.
-- Returns allowed, what the guarantee and the pool would give, and the
-- record's flags and retry time ('' if none); the record's states are
-- `raw_of`'s, read when the record is written.
local function evaluate_shared_now(kp, kg, probe)
  local pspec = bucket_spec[kp]
  local alg = pspec.alg
  local sp = load(kp)
  local pa = alg.available(sp, now, pspec.limits)
  local ga, gcap, sg, gspec = 0, 0, nil, nil
  if kg > 0 then
    gspec = bucket_spec[kg]
    sg = load(kg)
    ga = alg.available(sg, now, gspec.limits)
    gcap = gspec.capacity
  end
  local insufficient = probe > gcap + pspec.capacity
  local allowed = (not insufficient) and probe <= ga + pa
  local from_g = math.min(probe, ga)
  local flags = FLAG_SHARED
  local retry = ''
  if allowed then
    flags = flags + FLAG_ALLOWED
  elseif insufficient then
    flags = flags + FLAG_INSUFFICIENT
  elseif alg.retry_after then
    local function g_wait(k) return alg.retry_after(sg, now, gspec.limits, k) end
    local function p_wait(k) return alg.retry_after(sp, now, pspec.limits, k) end
    flags = flags + FLAG_RETRY
    retry = struct.pack('<d', share_retry(probe, ga, gcap, g_wait, pa, pspec.capacity, p_wait))
  end
  return allowed, from_g, probe - from_g, flags, retry
end

local function evaluate_shared(kp, kg, probe)
  local id = kp * 65536 + kg
  local m = shared_memo[id]
  local cp, cg = charges[kp] or 0, charges[kg] or 0
  if m and m[1] == probe and m[2] == cp and m[3] == cg then
    return m[4], m[5], m[6], m[7], m[8]
  end
  local allowed, from_g, from_p, flags, retry = evaluate_shared_now(kp, kg, probe)
  if not m then
    m = {}
    shared_memo[id] = m -- filled in place from now on: no table per evaluation
  end
  m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8] = probe, cp, cg, allowed, from_g, from_p, flags, retry
  return allowed, from_g, from_p, flags, retry
end

-- Charges bucket k with `cost`; it is saved once, when the batch is done (see
-- `save_dirty`).
local function charge(k, cost)
  local spec = bucket_spec[k]
  spec.alg.charge(states[k], now, spec.limits, cost)
  states[k].raw = nil -- encoded again when next reported
  memo_probe[k] = nil -- its state changed
  mark_dirty(k)
  charges[k] = charges[k] + 1
end

-- A shared parent's pool when the request's guarantee gave every unit: it
-- stands for the level (a peek of the level reads it), so it records the
-- admission as the memory store's does, and is kept for at least a window
-- even if it holds nothing (`save_dirty`).
local function record_admission(k)
  local s = states[k]
  s.last, s.raw, s.touched = now, nil, true
  mark_dirty(k)
end

-- Saves every charged bucket once, with a TTL until it goes idle. The script
-- runs atomically and reads each key once (the MGET above), so one write of
-- the final state is the same as a write per charge, at a command per bucket
-- rather than per charge (the batch's root level is charged by almost every
-- decision).
local function save_dirty()
  for i = 1, dirty_len do
    local k = dirty[i]
    local spec = bucket_spec[k]
    local alg, limits = spec.alg, spec.limits
    local s = states[k]
    local ttl = nil
    local idle_in = alg.idle_at(s, limits) - now
    if idle_in > 0 or slack > 0 then
      -- Rounded up: a key never vanishes before its state is idle.
      ttl = idiv(sub0(idle_in, 0) + 999, 1000) + slack
    end
    if s.touched and idle_in < limits.window then
      ttl = idiv(limits.window + 999, 1000) + slack
    end
    alg.save(KEYS[k], s, ttl)
  end
end

------------------------------------------------------------------ carries
-- ARGV[6] (protocol.rs `encode_carry`): a reload changed a fair-sharing
-- split (store/redis/carry.rs). algo/carry.rs in Lua, once per parent bucket
-- (until its marker names the new layout): what the old layout's keys (the
-- sources, the pool or whole bucket first) hold at `now` is summed and they
-- are emptied; the sum goes into the new layout's keys (the targets, the
-- pool or whole bucket first, then the guarantees) in order, each up to its
-- room, and what is left into the first. A carry is not an admission: each
-- target keeps its `last`, and the first takes the old level's.
local function carry_layout(marker, signature, ttl, targets, sources)
  if redis.call('GET', marker) == signature then return end
  local code = bucket_spec[targets[1]].code
  local count, curr, prev, by_ts = 0, 0, 0, {}
  local level_last, any = 0, false
  for i, k in ipairs(sources) do
    if stored[k] then
      local spec = bucket_spec[k]
      local limits = spec.limits
      local s = states[k] or load(k)
      if i == 1 then level_last = s.last end
      if code == 'fw' then
        if limits.start <= s.start then count = count + s.count end
      elseif code == 'gc' then
        if s.tat > now and s.iv > 0 then count = count + idiv(s.tat - now + s.iv - 1, s.iv) end
      elseif code == 'sw' then
        local _, _, p, c = spec.alg.counts(s, now, limits)
        curr, prev = curr + c, prev + p
      else
        spec.alg.add_entries(s, by_ts)
      end
      redis.call('DEL', KEYS[k], state_keys[k])
      stored[k] = false
      states[k] = spec.alg.load(KEYS[k], now, limits, nil, state_keys[k])
      any = true
    end
  end
  if any then
    local log = {}
    for ts, units in pairs(by_ts) do log[#log + 1] = { ts, units } end
    table.sort(log, function(a, b) return a[1] < b[1] end)
    -- Puts what fits of the sum into target k (all of it: `all`).
    local function put(k, all)
      local spec = bucket_spec[k]
      local alg, limits = spec.alg, spec.limits
      local s = states[k] or load(k)
      local last, changed = s.last, false
      if code == 'sw' then
        local start, _, p, c = alg.counts(s, now, limits)
        local tc, tp = curr, prev
        if not all then
          tc, tp = math.min(curr, sub0(limits.limit, c)), math.min(prev, sub0(limits.limit, p))
        end
        s.start, s.curr, s.prev = start, c + tc, p + tp
        curr, prev = curr - tc, prev - tp
        changed = tc + tp > 0
      elseif code == 'sl' then
        local room = alg.available(s, now, limits)
        while #log > 0 and (all or room > 0) do
          local newest = log[#log]
          local take = newest[2]
          if not all then take = math.min(take, room) end
          alg.insert(s, now, newest[1], take)
          room = room - take
          newest[2] = newest[2] - take
          if newest[2] == 0 then log[#log] = nil end
          changed = true
        end
      else
        local take = count
        if not all then take = math.min(count, alg.available(s, now, limits)) end
        if take > 0 then
          alg.charge(s, now, limits, take)
          count = count - take
          changed = true
        end
      end
      s.last = last
      if changed then
        s.raw = nil
        mark_dirty(k)
      end
    end
    for _, k in ipairs(targets) do put(k, false) end
    put(targets[1], true)
    local s = states[targets[1]]
    if level_last > s.last then
      s.last, s.raw = level_last, nil
      mark_dirty(targets[1])
    end
  end
  redis.call('SET', marker, signature, 'PX', int(ttl + slack))
end

do
  local carries = ARGV[6] or ''
  local at = 1
  while at <= #carries do
    local marker_len
    marker_len, at = struct.unpack('<H', carries, at)
    local marker = string.sub(carries, at, at + marker_len - 1)
    at = at + marker_len
    local signature_len = string.byte(carries, at)
    local signature = string.sub(carries, at + 1, at + signature_len)
    at = at + 1 + signature_len
    local ttl, nt, ns
    ttl, nt, ns, at = struct.unpack('<dHH', carries, at)
    local targets, sources = {}, {}
    for i = 1, nt do targets[i], at = struct.unpack('<H', carries, at) end
    for i = 1, ns do sources[i], at = struct.unpack('<H', carries, at) end
    carry_layout(marker, signature, ttl, targets, sources)
  end
end

local reply = { struct.pack('<d', now) }
local reply_len = 1 -- #reply, kept by hand

-- The current decision's key indexes and costs, per level, root first.
local chain, costs = {}, {}
-- A record's first two bytes (flags, state length) by flags * 256 + length:
-- a batch's records share a few.
local heads = {}

-- ARGV[5]: the decisions, in order. The loop stays inline (no call per
-- decision): it runs for every decision of every batch.
local decisions = ARGV[5]
local pos = 1
-- Per level of the current decision: a shared parent's guarantee key index
-- (0: none), or nil for a level that is not a shared parent; and per level
-- its shared verdict (allowed, what the guarantee and the pool give, the
-- record's flags and retry).
local guarantee_of, s_allowed, s_g, s_p, s_flags, s_retry = {}, {}, {}, {}, {}, {}
-- Whether `guarantee_of` holds a previous decision's entries (cleared only
-- then: most batches share nothing).
local shares_left = false
while pos <= #decisions do
  -- The header and (most chains are that short, and share nothing) the
  -- first two levels in one string.byte (struct.unpack interprets its
  -- format on every call).
  local mode, n, ns, a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5 =
    string.byte(decisions, pos, pos + DECISION_HEADER_LEN + 2 * DECISION_LEVEL_LEN - 1)
  if shares_left then
    for i in pairs(guarantee_of) do guarantee_of[i] = nil end
    shares_left = false
  end
  if ns > 0 then
    shares_left = true
    for j = 1, ns do
      local lv, g0, g1 = string.byte(decisions, pos + DECISION_HEADER_LEN + DECISION_SHARE_LEN * (j - 1),
        pos + DECISION_HEADER_LEN + DECISION_SHARE_LEN * j - 1)
      guarantee_of[lv] = g0 + 256 * g1
    end
    pos = pos + DECISION_SHARE_LEN * ns
    a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5 = string.byte(decisions,
      pos + DECISION_HEADER_LEN, pos + DECISION_HEADER_LEN + 2 * DECISION_LEVEL_LEN - 1)
  end
  if n >= 1 then
    chain[1] = a0 + 256 * a1
    costs[1] = a2 + 256 * (a3 + 256 * (a4 + 256 * a5))
  end
  if n >= 2 then
    chain[2] = b0 + 256 * b1
    costs[2] = b2 + 256 * (b3 + 256 * (b4 + 256 * b5))
  end
  for i = 3, n do
    local at = pos + DECISION_HEADER_LEN + DECISION_LEVEL_LEN * (i - 1)
    local k0, k1, c0, c1, c2, c3 = string.byte(decisions, at, at + DECISION_LEVEL_LEN - 1)
    chain[i] = k0 + 256 * k1
    costs[i] = c0 + 256 * (c1 + 256 * (c2 + 256 * c3))
  end
  pos = pos + DECISION_HEADER_LEN + DECISION_LEVEL_LEN * n
  local peek = mode == MODE_PEEK

  -- ChainOutcome::combine: every level evaluated for its own cost (nothing
  -- charged yet); a non-shadow level without room denies the chain. The memo
  -- is keyed by the probe, so a bucket an earlier decision probed with
  -- another cost is evaluated again.
  local admitted = true
  for i = 1, n do
    local k = chain[i]
    local probe = costs[i]
    if peek then probe = 1 end
    local kg = guarantee_of[i]
    if kg then
      -- The policy never shares a shadow level: no room denies.
      s_allowed[i], s_g[i], s_p[i], s_flags[i], s_retry[i] = evaluate_shared(k, kg, probe)
      if not s_allowed[i] then admitted = false end
    else
      if memo_probe[k] ~= probe then evaluate(k, probe) end
      if memo_denies[k] then admitted = false end
    end
  end

  -- Charge every level with room its own cost, only if the chain is admitted
  -- and committing (a shadow level without room is not charged, nor is a
  -- level of cost 0); one record per level either way.
  -- The reply is kept in pieces (table.concat joins them once): a record is
  -- its flags and state's length, the state as this decision saw it (before
  -- its own charge), and a retry time if any.
  local committing = admitted and mode == MODE_COMMIT
  for i = 1, n do
    local k = chain[i]
    local cost = costs[i]
    local kg = guarantee_of[i]
    if kg then
      local flags = s_flags[i]
      local charging = committing and s_allowed[i] and cost > 0
      if charging then flags = flags + FLAG_CHARGED end
      local praw = states[k].raw or raw_of(k)
      local graw = ''
      if kg > 0 then graw = states[kg].raw or raw_of(kg) end
      reply[reply_len + 1] = string.char(flags, #praw) .. praw .. string.char(#graw) .. graw
      reply[reply_len + 2] = s_retry[i]
      reply_len = reply_len + 2
      if charging then
        if s_g[i] > 0 then charge(kg, s_g[i]) end
        if s_p[i] > 0 then charge(k, s_p[i]) else record_admission(k) end
      end
    else
      local flags = memo_flags[k]
      local charging = committing and memo_allowed[k] and cost > 0
      if charging then flags = flags + FLAG_CHARGED end
      local raw = states[k].raw or raw_of(k)
      local head_id = flags * 256 + #raw
      local head = heads[head_id]
      if not head then
        head = string.char(flags, #raw)
        heads[head_id] = head
      end
      reply[reply_len + 1] = head
      reply[reply_len + 2] = raw
      reply_len = reply_len + 2
      local retry = memo_retry[k]
      if retry then
        reply_len = reply_len + 1
        reply[reply_len] = retry
      end
      if charging then charge(k, cost) end
    end
  end
end
save_dirty()
return table.concat(reply)
