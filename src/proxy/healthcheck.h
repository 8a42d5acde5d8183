/* healthcheck: the health-check node ports of `externalTrafficPolicy: Local` Services, as
 * kube-proxy serves them (pkg/proxy/healthcheck/service_health.go).
 *
 * For each such Service with a spec.healthCheckNodePort, a small non-blocking HTTP server
 * listens on 0.0.0.0:<port> in the node's namespace and answers every request with
 *   200 {"service":{"namespace":N,"name":S},"localEndpoints":K,"serviceProxyHealthy":true}
 * when the node has K > 0 usable local endpoints, else 503 with the same body, so an
 * external load balancer sends traffic only to nodes that can serve it without a hop.
 * The descriptors live in the caller's epoll set (given at creation); the caller hands
 * every event whose fd healthcheck_handle() claims. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/svc_plan.h"
#include "store/store.h"

struct hc_service {
	char *ns, *name;
	uint16_t port;
	unsigned local_endpoints;
};

/* Pure: the health-check Services of the store (externalTrafficPolicy Local with a
 * healthCheckNodePort), their local endpoint counts taken from the planner's Local-policy
 * entries (sp may be NULL: 0).  *out is malloc'd; free with hc_services_free. */
size_t hc_services_collect(const struct store *s, const struct svc_planner *sp,
			   struct hc_service **out);
void hc_services_free(struct hc_service *v, size_t n);

/* Pure: the HTTP response for one Service (malloc'd). */
char *hc_response(const struct hc_service *svc);

struct healthcheck;
/* epfd: the caller's epoll set; listening and client fds are added to it (EPOLLIN,
 * data.fd = the fd). */
struct healthcheck *healthcheck_new(int epfd);
void healthcheck_free(struct healthcheck *h);
/* Listen on exactly the ports of v (copied); closes ports no longer wanted.  0, or the
 * first -errno of a port that could not be opened (the others apply; retried next call).
 * *err (if not NULL) gets a message for that failure (malloc'd) or NULL. */
int healthcheck_set(struct healthcheck *h, const struct hc_service *v, size_t n, char **err);
/* True if fd is one of ours (and the event was handled). */
bool healthcheck_handle(struct healthcheck *h, int fd);
/* Close clients that sent no complete request within a few seconds (call periodically). */
void healthcheck_tick(struct healthcheck *h);
/* Number of ports listening (tests). */
size_t healthcheck_nports(const struct healthcheck *h);
