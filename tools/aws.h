/*
 * aws.h - a job's S3 settings and credentials, taken the way the AWS CLI
 * takes them.
 *
 * Where each setting comes from, first found wins:
 *
 *   credentials  --access_key_id + --secret_access_key (+ --session_token);
 *                AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 *                (+ AWS_SESSION_TOKEN), skipped when --profile is given,
 *                as the AWS CLI skips them for its --profile;
 *                the profile's aws_access_key_id + aws_secret_access_key
 *                (+ aws_session_token) in the credentials file, else in
 *                the config file;
 *                none: unsigned (anonymous) requests, which public
 *                buckets answer.
 *   region       --region; AWS_REGION; AWS_DEFAULT_REGION; the profile's
 *                region; us-east-1 (the engine's default).
 *   endpoint     --s3_endpoint; AWS_ENDPOINT_URL_S3; AWS_ENDPOINT_URL; the
 *                profile's nested "s3 = / endpoint_url = ..."; its
 *                endpoint_url; AWS itself. AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
 *                =true skips the environment and the profile, as in the
 *                AWS CLI.
 *   addressing   --s3_addressing; the profile's nested
 *                "s3 = / addressing_style = ..."; auto.
 *
 * The profile is --profile, else AWS_PROFILE, else "default". Its files are
 * AWS_SHARED_CREDENTIALS_FILE (else ~/.aws/credentials), where its section
 * is [NAME], and AWS_CONFIG_FILE (else ~/.aws/config), where it is
 * [profile NAME] ([default] or [profile default] for the default one); both
 * are read with inih, keys case-insensitive. Missing files are fine; a
 * profile named by --profile or AWS_PROFILE that neither file has is an
 * error naming both files. A profile that gets its credentials from
 * credential_process, role_arn or SSO is not run: sstfetch says so on
 * stderr and goes on without those credentials.
 *
 * Secrets (the secret key and the session token) are never printed: not in
 * messages, not in reports (the JSON report's "job options" shows them as
 * "(set)"). aws_free() wipes them.
 */
#ifndef SSTFETCH_TOOLS_AWS_H
#define SSTFETCH_TOOLS_AWS_H

#include <stdbool.h>

#include "options.h"
#include "report.h"
#include "sstfetch.h"

/* Strings an aws_s3 owns: the settings and their sources' words. */
#define AWS_MAX_STRINGS 16

/* A job's resolved S3 settings. */
struct aws_s3 {
	struct sstf_s3_config cfg; /* for sstf_config.s3; points into strings */
	struct report_s3 rep;      /* for the report: where from, no secret */
	/* Private to aws.c. */
	char *strings[AWS_MAX_STRINGS];
	unsigned nstrings;
};

/* True when url is an s3:// URL (scheme case-insensitive). */
bool aws_is_s3(const char *url);

/*
 * Resolves job o's S3 settings from its options, the environment and the
 * profile files (see the top of this file), and checks them with the
 * engine's sstf_config_check(). Returns 0 and a heap struct in *out, or
 * EXIT_USAGE after printing why on stderr, naming the job and where the bad
 * setting came from (never a secret). Main thread (reads the environment).
 */
int aws_resolve(const struct job_opts *o, struct aws_s3 **out);

/* Wipes the secrets and frees a. NULL is a no-op. */
void aws_free(struct aws_s3 *a);

#endif
