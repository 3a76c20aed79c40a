#include <mysql.h>
#include <mariadb_rpl.h>
#include <zlib.h>  // crc32, the checksum of xbstream chunks (zlib1g-dev comes with libmariadb-dev)

// mariadb_rpl_optionsv is variadic, which Swift cannot call: one fixed signature per option.
static inline int coffer_rpl_set_file(MARIADB_RPL *rpl, const char *name, size_t length) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, name, length);
}
static inline int coffer_rpl_set_start(MARIADB_RPL *rpl, unsigned long position) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, position);
}
static inline int coffer_rpl_set_server_id(MARIADB_RPL *rpl, unsigned int id) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, id);
}
static inline int coffer_rpl_set_flags(MARIADB_RPL *rpl, unsigned int flags) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, flags);
}
static inline MARIADB_RPL *coffer_rpl_init(MYSQL *mysql) { return mariadb_rpl_init(mysql); }
