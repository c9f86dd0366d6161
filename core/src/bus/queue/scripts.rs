//! The Lua scripts of the Redis queue: each step that reads and then writes runs as one, so
//! two consumers never both act on one entry.

/// Takes over idle entries (`XAUTOCLAIM`) and returns `{cursor, {{id, payload, delivery}…}}`,
/// moving those past their last delivery to the dead-letter stream on the way.
pub(super) const RECLAIM: &str = r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, entry in ipairs(r[2]) do
  local id = entry[1]
  local fields = entry[2]
  if type(fields) ~= 'table' then
    redis.call('XACK', KEYS[1], ARGV[1], id)
  else
    local prior, payload = 0, ''
    for i = 1, #fields, 2 do
      if fields[i] == 'deliveries' then prior = tonumber(fields[i + 1]) or 0 end
      if fields[i] == 'job' then payload = fields[i + 1] end
    end
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local count = 1
    if pending[1] then count = tonumber(pending[1][4]) end
    local delivery = prior + count
    if delivery > tonumber(ARGV[6]) then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'job', payload,
        'deliveries', delivery - 1, 'reason', 'lease expired on the last delivery',
        'failed_at_ms', ARGV[8])
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
    else
      table.insert(out, {id, payload, delivery})
    end
  end
end
return {r[1], out}";

/// Whether `ARGV[2]` holds entry `ARGV[3]`.
const OWNS: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
local owned = pending[1] ~= nil and pending[1][2] == ARGV[2]";

/// Resets the entry's idle time if the consumer still holds it: 1, else 0.
pub(super) fn extend_script() -> String {
    format!(
        "{OWNS}
if not owned then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1"
    )
}

/// Gives a held entry back: queued again with its deliveries, or dead-lettered on its last.
pub(super) fn fail_script() -> String {
    format!(
        "{OWNS}
if not owned then return 'lost' end
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
local payload = ''
if entry[1] then
  local fields = entry[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'job' then payload = fields[i + 1] end
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if tonumber(ARGV[4]) >= tonumber(ARGV[5]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'job', payload,
    'deliveries', ARGV[4], 'reason', ARGV[7], 'failed_at_ms', ARGV[8])
  return 'dead'
end
redis.call('XADD', KEYS[1], '*', 'job', payload, 'deliveries', ARGV[4])
return 'retry'"
    )
}

/// Appends a job unless the stream holds the capacity (acknowledged jobs are deleted, so the
/// stream's length is the number of outstanding jobs).
pub(super) const PUSH: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'job', ARGV[2])";

/// Moves a dead letter back to the queue with no deliveries: 1, 0 if absent, false if full.
pub(super) const REDRIVE: &str = r"
local entry = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if not entry[1] then return 0 end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then return false end
local payload = ''
local fields = entry[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'job' then payload = fields[i + 1] end
end
redis.call('XADD', KEYS[1], '*', 'job', payload)
redis.call('XDEL', KEYS[2], ARGV[1])
return 1";
