/*
 * Two restores that go wrong, through the certbcli functions and certemu_*:
 *
 *   1. A stuck restore (field report F8: CERTSRV_E_SERVER_SUSPENDED, COVERAGE.md C 44):
 *      registered, not completed. The service starts suspended: certemu_ca_start gives
 *      0x80094006, IsServerOnline S_OK with FALSE, every request 0x80094006, a second
 *      registration ESE's 0xC80001FA. RegisterComplete does not reach the waiting service;
 *      a restart (CSCONTROL_SHUTDOWN, certemu_ca_start) recovers.
 *   2. A restore that loses the end of its backup (COVERAGE.md C 45): an incremental set
 *      copied without its last log, genLow/genHigh taken from the files. The start
 *      succeeds and says what was lost: "last_start"."data_loss" and a CR04 violation.
 *
 * Prints "after recovery:" and the final report (compared in process and through a
 * server by tests/tools/server_mode.rs).
 */
#include "common.h"

#define SUSPENDED_HR "-2146877434" /* 0x80094006 as the report's signed number */

/* The saved locations of a running CA: 'D' database, 0x82 log directory (UTF-16, owned
 * by the caller; free with CertSrvBackupFree). */
static WCHAR *locations(const WCHAR *server)
{
    HCSBC h = NULL;
    WCHAR *list = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvRestorePrepareW(server, CSRESTORE_TYPE_FULL, &h));
    REQUIRE_OK(CertSrvRestoreGetDatabaseLocationsW(h, &list, &cb));
    REQUIRE_OK(CertSrvRestoreEnd(h));
    return list;
}

/* Copies the edbXXXXX.log files of `dir`/DataBase whose generation is at most `max_gen`
 * into the CA's log directory; returns how many. */
static int copy_logs_upto(certemu_ca *ca, const char *dir, const WCHAR *logdir, ULONG max_gen)
{
    char *from_dir = path_join(dir, CERTEMU_BACKUP_SUBDIR);
    char *logdir_u = utf8_from_w(logdir);
    char *to_dir = NULL;
    REQUIRE_OK(certemu_ca_host_path(ca, logdir_u, &to_dir));
    DIR *d = opendir(from_dir);
    REQUIRE(d != NULL);
    int copied = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long g = 0;
        char tail[8] = {0};
        if (strncmp(e->d_name, "edb", 3) == 0 && sscanf(e->d_name + 3, "%lx%7s", &g, tail) == 2 &&
            strcmp(tail, ".log") == 0 && g >= 1 && g <= max_gen) {
            char *from = path_join(from_dir, e->d_name);
            char *to = path_join(to_dir, e->d_name);
            EXPECT(copy_file(from, to) == 0);
            copied++;
            free(from);
            free(to);
        }
    }
    closedir(d);
    certemu_free_string(to_dir);
    free(logdir_u);
    free(from_dir);
    return copied;
}

/* Prepare, Register (genLow..genHigh), RegisterComplete(S_OK), End: one set. */
static void register_set(const WCHAR *server, WCHAR *db, const WCHAR *logdir, int full, ULONG low,
                         ULONG high)
{
    HCSBC h = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(server, full ? CSRESTORE_TYPE_FULL : 0, &h));
    CSEDB_RSTMAPW map[1] = {{db, db}};
    EXPECT_OK(CertSrvRestoreRegisterW(h, NULL, logdir, full ? map : NULL, full ? 1 : 0, logdir,
                                      low, high));
    EXPECT_OK(CertSrvRestoreRegisterComplete(h, S_OK));
    EXPECT_OK(CertSrvRestoreEnd(h));
}

static void stuck_restore(certemu_ca *ca, const WCHAR *server, const char *dir)
{
    REQUIRE_OK(certemu_ca_issue(ca, 10));
    REQUIRE_OK(backup_set(server, dir, 1, 1));
    long long records = report_num(ca, "record_count");
    WCHAR *locs = locations(server);
    WCHAR *db = (WCHAR *)list_find(locs, CSBFT_CERTSERVER_DATABASE) + 1;
    const WCHAR *logdir = list_find(locs, CSBFT_LOG_DIR) + 1;
    ULONG low = 0, high = 0;
    log_range(dir, &low, &high);
    REQUIRE(low >= 1 && high >= low);

    EXPECT_OK(CertSrvServerControl(server, CSCONTROL_SHUTDOWN, NULL, NULL));
    REQUIRE_OK(certemu_ca_wipe_files(ca));
    REQUIRE(restore_files(ca, dir) == 0);
    HCSBC hsb = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(server, CSRESTORE_TYPE_FULL, &hsb));
    CSEDB_RSTMAPW map[1] = {{db, db}};
    EXPECT_OK(CertSrvRestoreRegisterW(hsb, NULL, logdir, map, 1, logdir, low, high));
    EXPECT_REPORT(ca, "pending", "true");

    /* No RegisterComplete: the service starts suspended for a database restore. */
    EXPECT_HR(CERTEMU_E_SERVER_SUSPENDED, certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"suspended\"");
    EXPECT_REPORT(ca, "last_start", "{\"hr\":" SUSPENDED_HR "}");
    BOOL online = TRUE;
    EXPECT_OK(CertSrvIsServerOnlineW(server, &online));
    EXPECT(online == FALSE);
    HCSBC hb = (HCSBC)1;
    EXPECT_HR(CERTEMU_E_SERVER_SUSPENDED, CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &hb));
    EXPECT(hb == NULL);
    EXPECT_HR(CERTEMU_E_SERVER_SUSPENDED,
              CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_LOGS_ONLY, &hb));
    EXPECT_HR(CERTEMU_E_SERVER_SUSPENDED, certemu_ca_issue(ca, 1));
    /* ESE's own interlock still answers a second registration. */
    HCSBC h2 = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(server, CSRESTORE_TYPE_FULL, &h2));
    EXPECT_HR(CERTEMU_E_JET_RESTORE_IN_PROGRESS,
              CertSrvRestoreRegisterW(h2, NULL, logdir, map, 1, logdir, low, high));
    EXPECT_OK(CertSrvRestoreEnd(h2));
    /* The service is up (suspended): it cannot be started again. */
    EXPECT_HR(E_INVALIDARG, certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"suspended\"");

    /* Completing is a local call: the waiting service stays suspended until restarted. */
    EXPECT_OK(CertSrvRestoreRegisterComplete(hsb, S_OK));
    EXPECT_OK(CertSrvRestoreEnd(hsb));
    EXPECT_REPORT(ca, "pending", "false");
    EXPECT_REPORT(ca, "service", "\"suspended\"");
    online = TRUE;
    EXPECT_OK(CertSrvIsServerOnlineW(server, &online));
    EXPECT(online == FALSE);
    EXPECT_OK(CertSrvServerControl(server, CSCONTROL_SHUTDOWN, NULL, NULL));
    EXPECT_REPORT(ca, "service", "\"stopped\"");
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, CertSrvIsServerOnlineW(server, &online));
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"running\"");
    EXPECT_REPORT(ca, "hard", "true");
    EXPECT_REPORT(ca, "restore_marker_present", "false");
    EXPECT_OK(CertSrvIsServerOnlineW(server, &online));
    EXPECT(online == TRUE);
    EXPECT(report_num(ca, "record_count") == records);
    char *json = report(ca);
    EXPECT(strstr(json, "data_loss") == NULL);
    EXPECT(strstr(json, "CR04") == NULL);
    certemu_free_string(json);
    CertSrvBackupFree(locs);
}

static void early_end(certemu_ca *ca, const WCHAR *server, const char *full, const char *inc)
{
    /* A full backup, then 6 certificates (log capacity 4: one full generation and 2 in the
     * next) and an incremental backup of those two generations. */
    REQUIRE_OK(backup_set(server, full, 1, 1));
    REQUIRE_OK(certemu_ca_issue(ca, 6));
    REQUIRE_OK(backup_set(server, inc, 0, 0));
    long long records = report_num(ca, "record_count");
    WCHAR *locs = locations(server);
    WCHAR *db = (WCHAR *)list_find(locs, CSBFT_CERTSERVER_DATABASE) + 1;
    const WCHAR *logdir = list_find(locs, CSBFT_LOG_DIR) + 1;
    ULONG flow = 0, fhigh = 0, ilow = 0, ihigh = 0;
    log_range(full, &flow, &fhigh);
    log_range(inc, &ilow, &ihigh);
    REQUIRE(ilow == fhigh + 1 && ihigh == ilow + 1);

    EXPECT_OK(CertSrvServerControl(server, CSCONTROL_SHUTDOWN, NULL, NULL));
    REQUIRE_OK(certemu_ca_wipe_files(ca));
    REQUIRE(restore_files(ca, full) == 0);
    register_set(server, db, logdir, 1, flow, fhigh);
    /* The incremental set without its last log; its range as the files show it. */
    EXPECT(copy_logs_upto(ca, inc, logdir, ihigh - 1) == 1);
    register_set(server, db, logdir, 0, ilow, ihigh - 1);

    /* The start succeeds, without the 2 transactions of the missing log, and says so. */
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"running\"");
    EXPECT(report_num(ca, "record_count") == records - 2);
    char expect_loss[256];
    snprintf(expect_loss, sizeof expect_loss,
             "\"data_loss\":{\"missing_from\":%lu,\"missing_through\":%lu,\"lost_transactions\":2,"
             "\"backup\":{\"kind\":\"incremental\",\"low_gen\":%lu,\"high_gen\":%lu,",
             (unsigned long)ihigh, (unsigned long)ihigh, (unsigned long)ilow,
             (unsigned long)ihigh);
    char *json = report(ca);
    if (strstr(json, expect_loss) == NULL) {
        fprintf(stderr, "expected %s in the report: %s\n", expect_loss, json);
        g_failures++;
    }
    EXPECT(strstr(json, "\"rule\":\"CR04\"") != NULL);
    EXPECT(strstr(json, "\"clean\":false") != NULL);
    certemu_free_string(json);
    CertSrvBackupFree(locs);
}

int main(void)
{
    const WCHAR *server;
    certemu_ca *ca = make_ca(20, 4, &server);
    char *dir = scratch_dir("stuck_restore");
    char *first = path_join(dir, "first");
    char *full = path_join(dir, "full");
    char *inc = path_join(dir, "incremental-1");

    stuck_restore(ca, server, first);
    early_end(ca, server, full, inc);

    char *json = report(ca);
    printf("after recovery:\n%s\n", json);
    certemu_free_string(json);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(inc);
    free(full);
    free(first);
    free(dir);
    return finish("stuck_restore");
}
