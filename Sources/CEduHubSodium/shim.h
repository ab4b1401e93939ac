#ifndef CEDUHUB_SODIUM_SHIM_H
#define CEDUHUB_SODIUM_SHIM_H
// libsodium from Debian's libsodium-dev (1.0.18 on Debian 12).
#include <sodium.h>
#endif
