-- A placeholder for version 0014, which another branch of issue 15 adds under its own name: the sequence must run
-- without gaps. Delete this file when merging that branch (it brings the real 0014).
SELECT 1;
