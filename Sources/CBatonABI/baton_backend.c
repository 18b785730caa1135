#include "baton_backend.h"

int baton_backend_abi_version(void) { return BATON_BACKEND_ABI_VERSION; }
