/*
 * The documented backup scenario ("Backing Up Certificate Services", spec §8.1), step by
 * step, writing the certutil -backupDB layout into a scratch directory:
 *
 *   3  CertSrvIsServerOnline              the CA must be online
 *   4  CertSrvBackupPrepare               FULL
 *   5  CertSrvRestoreGetDatabaseLocations saved as DataBase/certbkxp.dat
 *   6  CertSrvBackupGetDatabaseNames      7-9 Open / Read loop / Close for each
 *  10  CertSrvBackupGetBackupLogs         7-9 for each
 *  11  CertSrvBackupTruncateLogs
 *  12  CertSrvBackupGetDynamicFileList    13: copied by other means (certemu_ca_host_path)
 *  14  CertSrvBackupEnd
 *  15  CertSrvBackupFree                  for every list, after End
 *
 * and checks every list's format and size, the files written, and the CA afterwards.
 */
#include "common.h"

static char *write_dir;
static unsigned char buffer[READ_BUFFER_SIZE];

/* Steps 7-9 for one list entry; returns the bytes copied. */
static long long back_up_file(HCSBC hbc, const WCHAR *entry, const char *dir)
{
    const WCHAR *name = entry + 1; /* strip the CSBFT character */
    LARGE_INTEGER size;
    size.QuadPart = -1;
    EXPECT_OK(CertSrvBackupOpenFile(hbc, name, 0, &size));
    EXPECT(size.QuadPart >= 0);
    /* One file open at a time. */
    LARGE_INTEGER again;
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupOpenFile(hbc, name, 0, &again));

    char *uname = utf8_from_w(name);
    char *dest = path_join(dir, win_basename(uname));
    FILE *f = fopen(dest, "wb");
    REQUIRE(f != NULL);
    long long total = 0;
    int reads = 0;
    for (;;) {
        DWORD got = 0xFFFFFFFF;
        HRESULT hr = CertSrvBackupRead(hbc, buffer, sizeof buffer, &got);
        EXPECT_OK(hr);
        if (hr != S_OK) {
            break;
        }
        REQUIRE(got <= sizeof buffer);
        REQUIRE(fwrite(buffer, 1, got, f) == got);
        total += got;
        reads++;
        if (got < sizeof buffer) { /* a short read is the end of the file */
            break;
        }
    }
    REQUIRE(fclose(f) == 0);
    /* After the end of the file, reads succeed with 0 bytes. */
    DWORD zero = 1;
    EXPECT_OK(CertSrvBackupRead(hbc, buffer, sizeof buffer, &zero));
    EXPECT(zero == 0);
    EXPECT_OK(CertSrvBackupClose(hbc));
    /* Close twice is out of sequence. */
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupClose(hbc));

    EXPECT(total == size.QuadPart);
    EXPECT(file_size(dest) == total);
    printf("  %-60s %10lld bytes in %d read(s)\n", uname, total, reads);
    free(dest);
    free(uname);
    return total;
}

int main(void)
{
    const WCHAR *server;
    certemu_ca *ca = make_ca(40, 4, &server);
    REQUIRE_OK(certemu_ca_issue(ca, 17)); /* several log generations */
    REQUIRE_OK(certemu_ca_revoke(ca, 3));
    long long records = report_num(ca, "record_count");
    EXPECT(records == 57);
    write_dir = scratch_dir("scenario_backup");
    char *db_dir = path_join(write_dir, CERTEMU_BACKUP_SUBDIR);
    REQUIRE(mkdir_p(db_dir) == 0);

    /* 3: the CA must be online. */
    BOOL online = FALSE;
    REQUIRE_OK(CertSrvIsServerOnline(server, &online));
    REQUIRE(online == TRUE);

    /* 4: prepare a full backup. */
    HCSBC hbc = NULL;
    REQUIRE_OK(CertSrvBackupPrepare(server, 0, CSBACKUP_TYPE_FULL, &hbc));
    REQUIRE(hbc != NULL);
    EXPECT_REPORT(ca, "backup_in_progress", "true");

    /* 5: the database locations, saved for the restore. */
    WCHAR *locations = NULL;
    DWORD cb_locations = 0;
    REQUIRE_OK(CertSrvRestoreGetDatabaseLocations(hbc, &locations, &cb_locations));
    EXPECT(list_count(locations) == 3);
    EXPECT(cb_locations == list_bytes(locations));
    const WCHAR *loc_db = list_find(locations, CSBFT_CERTSERVER_DATABASE);
    const WCHAR *loc_log = list_find(locations, CSBFT_LOG_DIR);
    const WCHAR *loc_sys = list_find(locations, CSBFT_CHECKPOINT_DIR);
    REQUIRE(loc_db != NULL && loc_log != NULL && loc_sys != NULL);
    EXPECT(loc_db[1] == '\\' && loc_db[2] == '\\'); /* UNC names */
    EXPECT(loc_log[1] == '\\' && loc_sys[1] == '\\');
    for (const WCHAR *p = locations; *p != 0; p += wlen(p) + 1) {
        char *u = utf8_from_w(p + 1);
        printf("  location %02x: %s\n", (unsigned)p[0], u);
        free(u);
    }
    char *dat = path_join(db_dir, CERTEMU_BACKUP_LOCATIONS_FILE);
    REQUIRE(write_file(dat, locations, cb_locations) == 0);

    /* 6-9: the database files. */
    WCHAR *databases = NULL;
    DWORD cb_databases = 0;
    REQUIRE_OK(CertSrvBackupGetDatabaseNames(hbc, &databases, &cb_databases));
    EXPECT(list_count(databases) == 1);
    EXPECT(cb_databases == list_bytes(databases));
    /* Truncating before anything was read would make the backup unrestorable. */
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupTruncateLogs(hbc));
    long long db_bytes = 0;
    for (const WCHAR *p = databases; *p != 0; p += wlen(p) + 1) {
        EXPECT(p[0] == CSBFT_CERTSERVER_DATABASE);
        EXPECT(wcmp(p, loc_db) == 0); /* the same file as the 'D' location */
        db_bytes += back_up_file(hbc, p, db_dir);
    }
    EXPECT(db_bytes > 0);

    /* 10: the logs. */
    WCHAR *logs = NULL;
    DWORD cb_logs = 0;
    REQUIRE_OK(CertSrvBackupGetBackupLogs(hbc, &logs, &cb_logs));
    int nlogs = list_count(logs);
    EXPECT(nlogs >= 1);
    EXPECT(cb_logs == list_bytes(logs));
    for (const WCHAR *p = logs; *p != 0; p += wlen(p) + 1) {
        EXPECT(p[0] == CSBFT_LOG);
        char *u = utf8_from_w(p + 1);
        const char *base = win_basename(u);
        EXPECT(strncmp(base, "edb", 3) == 0 && strlen(base) == 12); /* edbXXXXX.log */
        free(u);
        back_up_file(hbc, p, db_dir);
    }
    ULONG low = 0, high = 0;
    log_range(write_dir, &low, &high);
    EXPECT(low >= 1 && high >= low && (int)(high - low + 1) == nlogs);
    long long gens_before = report_num(ca, "current_generation");

    /* 11: truncate the logs, now that every listed file was read to its end. */
    EXPECT_OK(CertSrvBackupTruncateLogs(hbc));

    /* 12: the dynamic files, without type characters; 13: copied by other means. */
    WCHAR *dynamic = NULL;
    DWORD cb_dynamic = 0;
    REQUIRE_OK(CertSrvBackupGetDynamicFileList(hbc, &dynamic, &cb_dynamic));
    EXPECT(cb_dynamic == list_bytes(dynamic));
    char *dyn_dir = path_join(write_dir, "dynamic");
    REQUIRE(mkdir_p(dyn_dir) == 0);
    for (const WCHAR *p = dynamic; *p != 0; p += wlen(p) + 1) {
        EXPECT(p[0] == '\\' && p[1] == '\\');
        /* The backup API does not serve them. */
        LARGE_INTEGER sz;
        EXPECT_HR(E_INVALIDARG, CertSrvBackupOpenFile(hbc, p, 0, &sz));
        char *u = utf8_from_w(p);
        char *host = NULL;
        EXPECT_OK(certemu_ca_host_path(ca, u, &host));
        if (host != NULL) {
            char *dest = path_join(dyn_dir, win_basename(u));
            EXPECT(copy_file(host, dest) == 0);
            printf("  dynamic %s (%lld bytes)\n", u, file_size(dest));
            free(dest);
            certemu_free_string(host);
        }
        free(u);
    }

    /* 14: end the session. */
    EXPECT_OK(CertSrvBackupEnd(hbc));
    EXPECT_HR(E_HANDLE, CertSrvBackupEnd(hbc)); /* the handle is dead */
    EXPECT(report_num(ca, "sessions_open") == 0);
    EXPECT_REPORT(ca, "backup_in_progress", "false");
    EXPECT(report_num(ca, "outstanding_buffers") == 4);

    /* 15: the lists are still valid after End; free them. */
    EXPECT(list_find(locations, CSBFT_LOG_DIR) == loc_log);
    EXPECT(databases[0] == CSBFT_CERTSERVER_DATABASE && logs[0] == CSBFT_LOG);
    CertSrvBackupFree(locations);
    CertSrvBackupFree(databases);
    CertSrvBackupFree(logs);
    CertSrvBackupFree(dynamic);
    EXPECT(report_num(ca, "outstanding_buffers") == 0);

    /* The CA recorded the full backup, and the truncation left only the logs the
     * database still needs. */
    EXPECT(report_num(ca, "high_gen") == (long long)high);
    EXPECT(report_num(ca, "current_generation") > gens_before - 1);
    EXPECT(report_num(ca, "record_count") == records);
    printf("  logs %lu..%lu backed up; report after the backup:\n", (unsigned long)low,
           (unsigned long)high);
    char *json = report(ca);
    printf("  %s\n", json);
    certemu_free_string(json);

    /* The backup directory holds what a restore needs. */
    size_t dat_len = 0;
    unsigned char *dat_bytes = read_file(dat, &dat_len);
    EXPECT(dat_bytes != NULL && dat_len == cb_locations);
    free(dat_bytes);

    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(write_dir);
    free(dyn_dir);
    free(dat);
    free(db_dir);
    free(write_dir);
    return finish("scenario_backup");
}
