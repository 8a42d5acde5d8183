/* cni: the CNI plugin role of twill (spec 0.4.0, 1.0.0, 1.1.0).
 * Reads CNI_* from the environment and the network configuration from stdin, writes
 * the result or error JSON to stdout as the spec says; returns the process exit code. */
#pragma once

int cni_main(int argc, char **argv);
