/* proxy_cli: hidden `twill proxy-debug` subcommand (see proxy_cli.c). */
#pragma once

/* argv[0] is the subcommand name. Returns the process exit status. */
int proxy_debug_main(int argc, char **argv);
