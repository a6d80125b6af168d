-- Issue 3, reading at scale. The triage list is sorted newest first and paged by the keyset
-- (received_on, id); with this index a page of 50 out of 100,000 granted cases is an index walk
-- that stops after 50 granted rows, instead of a sort of all of them (benches/case_list.rs).

CREATE INDEX cases_newest_first ON cases (received_on DESC, id DESC);
