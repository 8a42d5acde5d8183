/* svc_list: `twill svc list`, the Service table as `ipvsadm -Ln` shows it, and the
 * <state-dir>/services.json snapshot the agent writes for it.
 *
 * The agent writes services.json (the planner's entries for its node) when they change;
 * `svc list` reads it (or plans the manifests itself with --manifests/--node) and adds
 * per-backend connection counts from conntrack in the current network namespace, so it
 * must run in the node's namespace (`twill lab exec ctr -- twill svc list ...`). */
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "proxy/svc_plan.h"

#define TWILL_SERVICES_FILE "services.json"


/* services.json content for the planner's current entries (caller frees):
 * {"node":N,"dataplane":D,"services":[{"service":"ns/name","address":..,"port":..,
 *  "protocol":"TCP","scope":..,"verdict":..,"masquerade":..,"affinityTimeout":..,
 *  "scheduler":"random","backends":[{"ip":..,"port":..,"ready":..,"terminating":..,
 *  "local":..,"node":..}]}],"errors":{"ns/name":"why"}} */
char *svc_services_json(const struct svc_planner *sp, const char *node, const char *dataplane);
/* The same, written to f as it is made (no copy of the whole document in memory). */
void svc_services_json_write(FILE *f, const struct svc_planner *sp, const char *node,
			     const char *dataplane);

/* Per-backend connection counts from conntrack. */
struct ct_count {
	unsigned active;   /* TCP ESTABLISHED */
	unsigned inactive; /* every other state, UDP/SCTP flows */
};

/* argv[0] is "svc". Returns the process exit status. */
int svc_main(int argc, char **argv);
