// idoc: the ImageDoctor.c command line (the commands are in cli/commands.c).
#include "cli/commands.h"

int main(int argc, char **argv) { return idoc_cli_exit(idoc_cli_main(argc, argv)); }
