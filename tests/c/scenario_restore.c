/*
 * The documented restore scenario ("Restoring Certificate Services from Backup", spec
 * §8.3) after a disk loss, with one full and two incremental backup sets:
 *
 *   backups   full (truncating), then two logs-only backups, while the CA keeps issuing
 *   loss      the CA is stopped and its database, logs and checkpoint are deleted
 *   3         CertSrvIsServerOnline; CertSrvServerControl(CSCONTROL_SHUTDOWN)
 *   4         CertSrvRestorePrepare(CSRESTORE_TYPE_FULL)
 *   5-6       the locations saved in certbkxp.dat -> a CSEDB_RSTMAPW {db, db}
 *   8         copy the .edb and logs to the host paths of those locations
 *   9-10      CertSrvRestoreRegister(map, 1, genLow, genHigh); RegisterComplete(S_OK)
 *   11        each incremental set: copy its logs; Prepare(0), Register(NULL, 0), Complete
 *   13        CertSrvRestoreEnd
 *   14        certemu_ca_start runs the recovery; every certificate is back
 */
#include "common.h"

struct locations {
    WCHAR *database;
    WCHAR *log_dir;
    WCHAR *system_dir;
};

/* Reads DataBase/certbkxp.dat of a full backup directory. */
static struct locations read_locations(const char *dir)
{
    struct locations l = {NULL, NULL, NULL};
    char *db_dir = path_join(dir, CERTEMU_BACKUP_SUBDIR);
    char *dat = path_join(db_dir, CERTEMU_BACKUP_LOCATIONS_FILE);
    size_t len = 0;
    unsigned char *bytes = read_file(dat, &len);
    REQUIRE(bytes != NULL && len >= 2 && len % 2 == 0);
    WCHAR *list = (WCHAR *)xmalloc(len + 2);
    memcpy(list, bytes, len);
    list[len / 2] = 0;
    for (const WCHAR *p = list; *p != 0; p += wlen(p) + 1) {
        size_t n = wlen(p);
        WCHAR *copy = (WCHAR *)xmalloc(n * sizeof(WCHAR));
        memcpy(copy, p + 1, n * sizeof(WCHAR)); /* without the type, with the NUL */
        if (p[0] == CSBFT_CERTSERVER_DATABASE) {
            l.database = copy;
        } else if (p[0] == CSBFT_LOG_DIR) {
            l.log_dir = copy;
        } else if (p[0] == CSBFT_CHECKPOINT_DIR) {
            l.system_dir = copy;
        } else {
            free(copy);
        }
    }
    REQUIRE(l.database != NULL && l.log_dir != NULL && l.system_dir != NULL);
    free(list);
    free(bytes);
    free(dat);
    free(db_dir);
    return l;
}

static char *host_path_w(certemu_ca *ca, const WCHAR *windows_path)
{
    char *u = utf8_from_w(windows_path);
    char *host = NULL;
    REQUIRE_OK(certemu_ca_host_path(ca, u, &host));
    char *copy = (char *)xmalloc(strlen(host) + 1);
    strcpy(copy, host);
    certemu_free_string(host);
    free(u);
    return copy;
}

/* Copies the edbXXXXX.log files of a backup set into the CA's log directory. */
static int copy_logs(certemu_ca *ca, const char *set_dir, const WCHAR *log_dir)
{
    char *from_dir = path_join(set_dir, CERTEMU_BACKUP_SUBDIR);
    char *to_dir = host_path_w(ca, log_dir);
    REQUIRE(mkdir_p(to_dir) == 0);
    DIR *d = opendir(from_dir);
    REQUIRE(d != NULL);
    int copied = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "edb", 3) == 0 && n > 4 && strcmp(e->d_name + n - 4, ".log") == 0) {
            char *from = path_join(from_dir, e->d_name);
            char *to = path_join(to_dir, e->d_name);
            EXPECT(copy_file(from, to) == 0);
            copied++;
            free(from);
            free(to);
        }
    }
    closedir(d);
    free(to_dir);
    free(from_dir);
    return copied;
}

/* Steps 4 and 9-13 for one backup set. */
static void register_set(const WCHAR *server, struct locations *l, const char *set_dir, int full)
{
    ULONG low = 0, high = 0;
    log_range(set_dir, &low, &high);
    REQUIRE(low >= 1 && high >= low);
    HCSBC hbc = NULL;
    REQUIRE_OK(CertSrvRestorePrepare(server, full ? CSRESTORE_TYPE_FULL : 0, &hbc));
    CSEDB_RSTMAPW map[1];
    map[0].pwszDatabaseName = l->database;
    map[0].pwszNewDatabaseName = l->database; /* restore under the same name */
    EXPECT_OK(CertSrvRestoreRegister(hbc, l->system_dir, l->log_dir, full ? map : NULL,
                                     full ? 1 : 0, l->log_dir, low, high));
    EXPECT_OK(CertSrvRestoreRegisterComplete(hbc, S_OK));
    EXPECT_OK(CertSrvRestoreEnd(hbc));
    printf("  registered %s set %s: logs %lu..%lu\n", full ? "full" : "incremental", set_dir,
           (unsigned long)low, (unsigned long)high);
}

int main(void)
{
    const WCHAR *server;
    certemu_ca *ca = make_ca(30, 4, &server);
    char *dir = scratch_dir("scenario_restore");
    char *full = path_join(dir, "full");
    char *inc1 = path_join(dir, "incremental-1");
    char *inc2 = path_join(dir, "incremental-2");

    /* The backups, while the CA works. */
    REQUIRE_OK(certemu_ca_issue(ca, 5));
    REQUIRE_OK(backup_set(server, full, 1, 1));
    REQUIRE_OK(certemu_ca_issue(ca, 9));
    REQUIRE_OK(certemu_ca_revoke(ca, 2));
    REQUIRE_OK(backup_set(server, inc1, 0, 0));
    REQUIRE_OK(certemu_ca_issue(ca, 6));
    REQUIRE_OK(certemu_ca_revoke(ca, 33));
    REQUIRE_OK(backup_set(server, inc2, 0, 0));
    long long records = report_num(ca, "record_count");
    long long revoked = report_num(ca, "revoked_count");
    EXPECT(records == 50 && revoked == 2);

    /* 3: stop Certificate Services; then the disk is lost. */
    BOOL online = FALSE;
    REQUIRE_OK(CertSrvIsServerOnline(server, &online));
    REQUIRE(online);
    EXPECT_OK(CertSrvServerControl(server, CSCONTROL_SHUTDOWN, NULL, NULL));
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, CertSrvIsServerOnline(server, &online));
    EXPECT_REPORT(ca, "service", "\"stopped\"");
    REQUIRE_OK(certemu_ca_wipe_files(ca));
    EXPECT_REPORT(ca, "log_generations", "[]");

    /* 5-8: the saved locations; the full set's files into place. */
    struct locations l = read_locations(full);
    char *edb_from_name = utf8_from_w(l.database);
    char *edb_from_dir = path_join(full, CERTEMU_BACKUP_SUBDIR);
    char *edb_from = path_join(edb_from_dir, win_basename(edb_from_name));
    char *edb_to = host_path_w(ca, l.database);
    EXPECT(copy_file(edb_from, edb_to) == 0);
    EXPECT(copy_logs(ca, full, l.log_dir) >= 1);

    /* 4, 9-10, 13: register the full set. A registration that is not complete keeps the
     * CA from starting: it waits, suspended, until restarted after the Complete. */
    {
        ULONG low = 0, high = 0;
        log_range(full, &low, &high);
        HCSBC hbc = NULL;
        REQUIRE_OK(CertSrvRestorePrepare(server, CSRESTORE_TYPE_FULL, &hbc));
        CSEDB_RSTMAPW map[1] = {{l.database, l.database}};
        EXPECT_OK(CertSrvRestoreRegister(hbc, l.system_dir, l.log_dir, map, 1, l.log_dir, low,
                                         high));
        EXPECT_REPORT(ca, "restore_marker_present", "true");
        EXPECT_REPORT(ca, "pending", "true");
        EXPECT_HR(CERTEMU_E_SERVER_SUSPENDED, certemu_ca_start(ca));
        EXPECT_REPORT(ca, "service", "\"suspended\"");
        EXPECT_OK(CertSrvRestoreRegisterComplete(hbc, S_OK));
        EXPECT_REPORT(ca, "pending", "false");
        EXPECT_OK(CertSrvServerControl(server, CSCONTROL_SHUTDOWN, NULL, NULL));
        EXPECT_REPORT(ca, "service", "\"stopped\"");
        EXPECT_OK(CertSrvRestoreEnd(hbc));
        EXPECT_HR(E_HANDLE, CertSrvRestoreEnd(hbc));
    }

    /* 11: each incremental set: its logs, then its registration. */
    EXPECT(copy_logs(ca, inc1, l.log_dir) >= 1);
    register_set(server, &l, inc1, 0);
    EXPECT(copy_logs(ca, inc2, l.log_dir) >= 1);
    register_set(server, &l, inc2, 0);
    EXPECT(report_num(ca, "sessions_open") == 0);

    /* 14: start Certificate Services: the recovery replays every restored log. */
    EXPECT_OK(certemu_ca_start(ca));
    REQUIRE_OK(CertSrvIsServerOnline(server, &online));
    EXPECT(online);
    EXPECT_REPORT(ca, "service", "\"running\"");
    EXPECT(report_num(ca, "record_count") == records);
    EXPECT(report_num(ca, "revoked_count") == revoked);
    EXPECT_REPORT(ca, "restore_marker_present", "false");
    EXPECT_REPORT(ca, "hard", "true");
    char *json = report(ca);
    printf("  after recovery: %s\n", json);
    certemu_free_string(json);

    /* Then a new full backup, as the documentation recommends. */
    char *after = path_join(dir, "after-restore");
    EXPECT_OK(backup_set(server, after, 1, 1));
    REQUIRE_OK(certemu_ca_issue(ca, 1));
    EXPECT(report_num(ca, "record_count") == records + 1);

    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(after);
    free(edb_to);
    free(edb_from);
    free(edb_from_dir);
    free(edb_from_name);
    free(l.database);
    free(l.log_dir);
    free(l.system_dir);
    free(inc2);
    free(inc1);
    free(full);
    free(dir);
    return finish("scenario_restore");
}
