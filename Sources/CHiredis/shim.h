#ifndef INVENTORY_CHIREDIS_SHIM_H
#define INVENTORY_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif
