/* podserver: the lab's built-in pod workload (`twill lab podserver`).
 *
 * A single-threaded epoll server that runs inside a pod's network namespace and answers
 * on the Pod's declared container ports, like traefik/whoami: any HTTP request over TCP
 * (or SCTP where the kernel has it) gets 200 and a text body naming the pod, its IPs, the
 * client's address and the node; every UDP datagram gets a short reply naming the pod and
 * the client.  It lets the lab show which backend answered a Service request and from
 * which source address the pod saw it (SNAT or not).
 *
 *   twill lab podserver --pod NS/NAME --node NODE --listen 80/tcp,53/udp[,...]
 *                       [--ready-fd N] [--idle-timeout SECONDS]
 *
 * --ready-fd: a file descriptor inherited from the runtime; "ready\n" is written to it
 * once every socket listens, then it is closed (the kubelet's readiness signal). */
#pragma once

int lab_podserver_main(int argc, char **argv);
