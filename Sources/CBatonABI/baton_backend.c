#include "baton_backend.h"

/* The header is the contract; this file exists because a C target needs one source. It names
 * the status codes for messages. */
const char *baton_status_name(baton_status status) {
    switch (status) {
    case BATON_OK: return "ok";
    case BATON_ERROR_NO_DRIVER: return "no driver";
    case BATON_ERROR_NO_DEVICE: return "no device";
    case BATON_ERROR_OUT_OF_MEMORY: return "out of memory";
    case BATON_ERROR_DEVICE: return "device error";
    }
    return "unknown status";
}
