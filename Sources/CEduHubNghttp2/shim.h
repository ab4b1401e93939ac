#ifndef CEDUHUB_NGHTTP2_SHIM_H
#define CEDUHUB_NGHTTP2_SHIM_H
// libnghttp2 from Debian's libnghttp2-dev (1.52 on Debian 12).
#include <nghttp2/nghttp2.h>
#endif
