/* kubelet: the lab's tiny pod runtime, run inside a node's agent (`twill agent --kubelet`).
 *
 * For every Pod scheduled to this node (spec.nodeName) it does what kubelet + a container
 * runtime do for networking: creates the pod's network namespace (named
 * <lab>-p-<node>-<podns>-<pod>), calls the CNI plugin exactly as a runtime does (CNI_*
 * environment, network configuration on stdin, result on stdout), starts the built-in pod
 * server (`twill lab podserver`) inside it on the Pod's declared ports, and publishes the
 * Pod's status (podIPs, phase, Ready) as an overlay file in <manifests>/.twill/.  When the
 * Pod goes away it stops the server (by pid), calls CNI DEL and removes the namespace.
 * Pods already running when the agent restarts are adopted, not recreated. */
#pragma once
#include <stdbool.h>

#include "store/store.h"

struct kubelet_cfg {
	const char *node_name;
	const char *lab;	  /* lab name: prefix of the pod namespaces */
	const char *manifest_dir; /* where the Pod status overlays go */
	const char *state_dir;	  /* the node's state dir (node.json, CNI config, pod pids) */
	const char *self_exe;	  /* path of the twill binary (CNI plugin and pod server) */
};

struct kubelet;
struct kubelet *kubelet_new(struct store *s, const struct kubelet_cfg *cfg);
void kubelet_free(struct kubelet *k);
bool kubelet_dirty(const struct kubelet *k);
/* The node's state (node.json) changed: look again now instead of at the next retry. */
void kubelet_kick(struct kubelet *k);
/* Bring pods in line with the store. 0 or -errno (stays dirty and is retried). */
int kubelet_sync(struct kubelet *k);
/* Milliseconds until kubelet_dirty() turns true by itself (a retry, a pending CNI call,
 * the periodic check of pod servers), 0 if it is already, -1 if only a store event can
 * make it.  For the agent's epoll timeout. */
int kubelet_timeout_ms(const struct kubelet *k);
