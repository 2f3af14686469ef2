// libzip (Debian: libzip-dev; pkg-config `libzip`): ZIP archives read with consistency checks.
#include <zip.h>
