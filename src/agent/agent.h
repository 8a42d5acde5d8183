/* agent: the node agent (twill agent --node NAME --manifests DIR ...). */
#pragma once

int agent_main(int argc, char **argv);
