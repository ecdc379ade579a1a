-- A placeholder for version 0013, which another branch of issue 15 adds under its own name: the sequence must run
-- without gaps. Delete this file when merging that branch (it brings the real 0013).
SELECT 1;
