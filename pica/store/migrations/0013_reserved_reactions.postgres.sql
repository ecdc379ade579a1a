-- Placeholder for migration 0013, reserved for reactions (issue 15) on another branch: versions must run without
-- gaps. Merging that branch replaces this file with its own 0013.
SELECT 1;
