-- A recording's identity is its CRC-64/NVME (16 hex digits) now. Earlier versions wrote the
-- file's sha256 here; such a job takes its file's identity again before it goes on. A CHAR
-- column would hand the shorter value back padded under some SQL modes.
ALTER TABLE recording_jobs MODIFY checksum VARCHAR(64) NULL;
