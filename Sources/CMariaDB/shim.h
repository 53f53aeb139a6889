#ifndef INVENTORY_CMARIADB_SHIM_H
#define INVENTORY_CMARIADB_SHIM_H
#include <mysql.h>
#include <errmsg.h>
#endif
