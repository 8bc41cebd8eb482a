-- A job store written by molq-core with schema version 2 (the release before version 3),
-- dumped with sqlite3's iterdump: two jobs, a dependency edge, transitions, a lease.
BEGIN TRANSACTION;
CREATE TABLE molq_dependencies (
	job_id VARCHAR(64) NOT NULL, 
	dependency_job_id VARCHAR(64) NOT NULL, 
	dependency_type VARCHAR(16) NOT NULL, 
	scheduler_dependency TEXT, 
	PRIMARY KEY (job_id, dependency_job_id, dependency_type), 
	FOREIGN KEY(job_id) REFERENCES molq_jobs (job_id) ON DELETE CASCADE
);
INSERT INTO "molq_dependencies" VALUES('old-down','old-up','after_success',NULL);
CREATE TABLE molq_jobs (
	job_id VARCHAR(64) NOT NULL, 
	cluster_name VARCHAR(255) NOT NULL, 
	scheduler VARCHAR(64) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	raw_state VARCHAR(255), 
	root_job_id VARCHAR(64) NOT NULL, 
	attempt INTEGER NOT NULL, 
	previous_attempt_job_id VARCHAR(64), 
	retry_group_id VARCHAR(64), 
	profile_name VARCHAR(255), 
	scheduler_job_id VARCHAR(255), 
	created_at FLOAT, 
	submitted_at FLOAT, 
	started_at FLOAT, 
	finished_at FLOAT, 
	updated_at FLOAT, 
	exit_code INTEGER, 
	exit_signal INTEGER, 
	failure_reason TEXT, 
	cwd TEXT, 
	job_dir TEXT, 
	command_type VARCHAR(16) NOT NULL, 
	command_display TEXT NOT NULL, 
	job_name TEXT, 
	metadata_json TEXT NOT NULL, 
	spec_json TEXT NOT NULL, 
	retry_json TEXT, 
	next_retry_at FLOAT, 
	retried_by VARCHAR(64), 
	missing_count INTEGER NOT NULL, 
	missing_since FLOAT, 
	target_json TEXT, 
	submit_host VARCHAR(255), 
	submit_pid INTEGER, 
	cleaned_at FLOAT, 
	PRIMARY KEY (job_id)
);
INSERT INTO "molq_jobs" VALUES('old-up','c','local','succeeded',NULL,'old-up',1,NULL,NULL,NULL,'123',1.79616123406396031381e+09,NULL,NULL,NULL,1.79616123406473803523e+09,0,NULL,NULL,NULL,NULL,'argv','true',NULL,'{"k": "v"}','{"argv": ["true"]}',NULL,NULL,NULL,0,NULL,NULL,'oldhost',1,NULL);
INSERT INTO "molq_jobs" VALUES('old-down','c','local','created',NULL,'old-down',1,NULL,NULL,NULL,NULL,1.79616123406442475315e+09,NULL,NULL,NULL,1.79616123406442475315e+09,NULL,NULL,NULL,NULL,NULL,'argv','echo',NULL,'{}','{}',NULL,NULL,NULL,0,NULL,NULL,'oldhost',1,NULL);
CREATE TABLE molq_leases (
	name VARCHAR(255) NOT NULL, 
	owner VARCHAR(255) NOT NULL, 
	expires_at FLOAT NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "molq_leases" VALUES('daemon:c','oldhost:1:abc',1.79616126406484913824e+09);
CREATE TABLE molq_meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "molq_meta" VALUES('schema_version','2');
CREATE TABLE molq_transitions (
	id INTEGER NOT NULL, 
	job_id VARCHAR(64) NOT NULL, 
	old_state VARCHAR(16), 
	new_state VARCHAR(16) NOT NULL, 
	timestamp FLOAT NOT NULL, 
	reason TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(job_id) REFERENCES molq_jobs (job_id) ON DELETE CASCADE
);
INSERT INTO "molq_transitions" VALUES(1,'old-up',NULL,'created',1.79616123406396031381e+09,'submitted');
INSERT INTO "molq_transitions" VALUES(2,'old-down',NULL,'created',1.79616123406442475315e+09,'submitted');
INSERT INTO "molq_transitions" VALUES(3,'old-up','created','submitted',1.79616123406458759307e+09,'accepted');
INSERT INTO "molq_transitions" VALUES(4,'old-up','submitted','succeeded',1.79616123406473803523e+09,'done');
CREATE INDEX ix_molq_jobs_cluster_state ON molq_jobs (cluster_name, state);
CREATE INDEX ix_molq_jobs_created ON molq_jobs (cluster_name, created_at);
CREATE INDEX ix_molq_jobs_root ON molq_jobs (root_job_id);
CREATE INDEX ix_molq_transitions_job ON molq_transitions (job_id);
CREATE INDEX ix_molq_dependencies_upstream ON molq_dependencies (dependency_job_id);
COMMIT;
