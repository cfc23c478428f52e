// Backup, disk loss and restore through bindings in the style CsWin32 generates from
// win32metadata (research: clients.md §3.3). Written for this test suite, not generated:
//
//   * DllImport("CERTADM.dll", ExactSpelling = true) with the W entry points, in a static
//     partial class PInvoke, unsafe signatures with raw pointers and the small blittable
//     structs CsWin32 emits (HRESULT, PCWSTR, PWSTR, BOOL, CSEDB_RSTMAPW; CsWin32 makes
//     them `readonly struct`, which Mono's mcs, a C# 7.0 compiler, does not accept);
//   * UTF-16 strings pinned with `fixed`, lists read as UTF-16 and freed with
//     CertSrvBackupFree;
//   * the documented procedures: a full backup (locations, database, logs, truncation),
//     CertSrvServerControlW(CSCONTROL_SHUTDOWN), a disk loss, the files put back,
//     CertSrvRestorePrepareW, CertSrvRestoreRegisterW with a CSEDB_RSTMAPW,
//     CertSrvRestoreRegisterComplete, CertSrvRestoreEnd, then the start, which recovers
//     every record.
//
// What Windows does by other means (create the CA, issue and revoke certificates, lose
// the disk, start the service, map a Windows path to a host file) goes through the
// certemu_* control API of the same library (include/certemu.h), declared the same way.
//
// Usage: GeneratedBindings.exe BACKUP_DIR
// Prints each step; the last line is "report: <certemu_ca_report JSON>". Exit code 0 when
// every call returned what the procedure expects and every record came back.

using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Windows.Win32;
using Windows.Win32.Foundation;
using Windows.Win32.Security.Cryptography.Certificates;

namespace Windows.Win32.Foundation
{
    internal partial struct HRESULT
    {
        internal readonly int Value;
        internal HRESULT(int value) { this.Value = value; }
        internal bool Succeeded { get { return this.Value >= 0; } }
        public override string ToString() { return string.Format("0x{0:X8}", this.Value); }
        internal static readonly HRESULT S_OK = new HRESULT(0);
    }

    internal unsafe partial struct PCWSTR
    {
        internal readonly char* Value;
        internal PCWSTR(char* value) { this.Value = value; }
    }

    internal unsafe partial struct PWSTR
    {
        internal readonly char* Value;
        internal PWSTR(char* value) { this.Value = value; }
    }

    internal partial struct BOOL
    {
        private readonly int value;
        internal BOOL(bool value) { this.value = value ? 1 : 0; }
        public static implicit operator bool(BOOL value) { return value.value != 0; }
    }
}

namespace Windows.Win32.Security.Cryptography.Certificates
{
    internal enum CSBACKUP_TYPE : uint
    {
        CSBACKUP_TYPE_FULL = 1,
        CSBACKUP_TYPE_LOGS_ONLY = 2,
    }

    internal partial struct CSEDB_RSTMAPW
    {
        internal PWSTR pwszDatabaseName;
        internal PWSTR pwszNewDatabaseName;
    }
}

namespace Windows.Win32
{
    internal static partial class PInvoke
    {
        internal const uint CSRESTORE_TYPE_FULL = 1;
        internal const uint CSCONTROL_SHUTDOWN = 1;

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvIsServerOnlineW(PCWSTR pwszServerName, BOOL* pfServerOnline);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupPrepareW(PCWSTR pwszServerName, uint grbitJet, CSBACKUP_TYPE dwBackupFlags, void** phbc);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvRestoreGetDatabaseLocationsW(void* hbc, PWSTR* ppwszzDatabaseLocationList, uint* pcbSize);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupGetDatabaseNamesW(void* hbc, PWSTR* ppwszzAttachmentInformation, uint* pcbSize);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupGetBackupLogsW(void* hbc, PWSTR* ppwszzBackupLogFiles, uint* pcbSize);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupOpenFileW(void* hbc, PCWSTR pwszAttachmentName, uint cbReadHintSize, long* pliFileSize);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupRead(void* hbc, void* pvBuffer, uint cbBuffer, uint* pcbRead);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupClose(void* hbc);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupTruncateLogs(void* hbc);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvBackupEnd(void* hbc);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe void CertSrvBackupFree(void* pv);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvRestorePrepareW(PCWSTR pwszServerName, uint dwRestoreFlags, void** phbc);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvRestoreRegisterW(void* hbc, PCWSTR pwszCheckPointFilePath, PCWSTR pwszLogPath, CSEDB_RSTMAPW* rgrstmap, int crstmap, PCWSTR pwszBackupLogPath, uint genLow, uint genHigh);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvRestoreRegisterComplete(void* hbc, HRESULT hrRestoreState);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvRestoreEnd(void* hbc);

        [DllImport("CERTADM.dll", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.System32)]
        internal static extern unsafe HRESULT CertSrvServerControlW(PCWSTR pwszServerName, uint dwControlFlags, uint* pcbOut, byte** ppbOut);
    }
}

// The emulator's control API (include/certemu.h): UTF-8 strings in, owned strings out.
internal static unsafe class CertEmu
{
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_create(byte* server_name, void* opts, void** ca);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_server_name_w(void* ca, char** name);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_issue(void* ca, uint n);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_revoke(void* ca, uint request_id);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_wipe_files(void* ca);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_start(void* ca);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_destroy(void* ca);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_host_path(void* ca, byte* windows_path, byte** host);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_ca_report(void* ca, byte** json);
    [DllImport("CERTADM.dll", ExactSpelling = true)]
    internal static extern HRESULT certemu_free_string(byte* s);

    internal static string Take(byte* s)
    {
        int n = 0;
        while (s[n] != 0) n++;
        string text = Encoding.UTF8.GetString(s, n);
        certemu_free_string(s);
        return text;
    }

    internal static string Report(void* ca)
    {
        byte* json = null;
        GeneratedBindings.Check("certemu_ca_report", certemu_ca_report(ca, &json));
        return Take(json);
    }

    // A number member of the report ("record_count":N).
    internal static long Number(string report, string member)
    {
        string key = "\"" + member + "\":";
        int at = report.IndexOf(key, StringComparison.Ordinal) + key.Length;
        int end = at;
        while (end < report.Length && char.IsDigit(report[end])) end++;
        return long.Parse(report.Substring(at, end - at));
    }

    internal static string HostPath(void* ca, string windowsPath)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(windowsPath + "\0");
        byte* host = null;
        fixed (byte* p = utf8)
            GeneratedBindings.Check("certemu_ca_host_path", certemu_ca_host_path(ca, p, &host));
        return Take(host);
    }
}

internal static unsafe class GeneratedBindings
{
    static int failures;

    internal static HRESULT Check(string what, HRESULT hr)
    {
        return Expect(what, hr, HRESULT.S_OK);
    }

    static HRESULT Expect(string what, HRESULT hr, HRESULT want)
    {
        Console.WriteLine("{0} {1}", what, hr);
        if (hr.Value != want.Value)
        {
            Console.WriteLine("  FAILED: expected {0}", want);
            failures++;
        }
        return hr;
    }

    // The entries of a double-NUL list, with their one-character type.
    static string[] Entries(PWSTR list, uint cb)
    {
        string text = new string(list.Value, 0, (int)(cb / 2));
        return text.Split(new char[] { '\0' }, StringSplitOptions.RemoveEmptyEntries);
    }

    static string FileName(string windowsPath)
    {
        return windowsPath.Substring(windowsPath.LastIndexOf('\\') + 1);
    }

    // Opens, reads and closes every entry of a list into dir.
    static void CopyAll(void* hbc, string[] entries, string dir, byte* buffer, uint size)
    {
        foreach (string entry in entries)
        {
            string name = entry.Substring(1);
            long fileSize = 0;
            fixed (char* p = name)
                Check("CertSrvBackupOpenFileW " + FileName(name), PInvoke.CertSrvBackupOpenFileW(hbc, new PCWSTR(p), size, &fileSize));
            long total = 0;
            using (FileStream fs = File.Create(Path.Combine(dir, FileName(name))))
            {
                byte[] managed = new byte[size];
                uint read;
                do
                {
                    read = 0;
                    HRESULT hr = PInvoke.CertSrvBackupRead(hbc, buffer, size, &read);
                    if (!hr.Succeeded) { Check("CertSrvBackupRead", hr); break; }
                    Marshal.Copy((IntPtr)buffer, managed, 0, (int)read);
                    fs.Write(managed, 0, (int)read);
                    total += read;
                } while (read == size);
            }
            if (total != fileSize)
            {
                Console.WriteLine("  FAILED: {0} bytes of {1}", total, fileSize);
                failures++;
            }
            Check("CertSrvBackupClose", PInvoke.CertSrvBackupClose(hbc));
        }
    }

    public static int Main(string[] args)
    {
        string backupDir = Path.Combine(args[0], "DataBase");
        Directory.CreateDirectory(backupDir);
        void* ca = null;
        Check("certemu_ca_create", CertEmu.certemu_ca_create(null, null, &ca));
        char* server = null;
        Check("certemu_ca_server_name_w", CertEmu.certemu_ca_server_name_w(ca, &server));
        PCWSTR serverName = new PCWSTR(server);
        Console.WriteLine("server {0}", new string(server));
        Check("certemu_ca_issue", CertEmu.certemu_ca_issue(ca, 25));
        Check("certemu_ca_revoke", CertEmu.certemu_ca_revoke(ca, 3));
        string before = CertEmu.Report(ca);
        long records = CertEmu.Number(before, "record_count");
        long revoked = CertEmu.Number(before, "revoked_count");

        // The full backup.
        BOOL online;
        Check("CertSrvIsServerOnlineW", PInvoke.CertSrvIsServerOnlineW(serverName, &online));
        void* hbc = null;
        Check("CertSrvBackupPrepareW", PInvoke.CertSrvBackupPrepareW(serverName, 0, CSBACKUP_TYPE.CSBACKUP_TYPE_FULL, &hbc));
        PWSTR locations, names, logs;
        uint cbLocations, cbNames, cbLogs;
        Check("CertSrvRestoreGetDatabaseLocationsW", PInvoke.CertSrvRestoreGetDatabaseLocationsW(hbc, &locations, &cbLocations));
        string[] locationEntries = Entries(locations, cbLocations);
        Check("CertSrvBackupGetDatabaseNamesW", PInvoke.CertSrvBackupGetDatabaseNamesW(hbc, &names, &cbNames));
        const uint size = 64 * 1024;
        byte* buffer = (byte*)Marshal.AllocHGlobal((int)size);
        CopyAll(hbc, Entries(names, cbNames), backupDir, buffer, size);
        Check("CertSrvBackupGetBackupLogsW", PInvoke.CertSrvBackupGetBackupLogsW(hbc, &logs, &cbLogs));
        string[] logEntries = Entries(logs, cbLogs);
        CopyAll(hbc, logEntries, backupDir, buffer, size);
        Check("CertSrvBackupTruncateLogs", PInvoke.CertSrvBackupTruncateLogs(hbc));
        Check("CertSrvBackupEnd", PInvoke.CertSrvBackupEnd(hbc));
        PInvoke.CertSrvBackupFree(locations.Value);
        PInvoke.CertSrvBackupFree(names.Value);
        PInvoke.CertSrvBackupFree(logs.Value);
        Marshal.FreeHGlobal((IntPtr)buffer);

        // The log generations of the set, from the names edbXXXXX.log.
        uint low = uint.MaxValue, high = 0;
        foreach (string entry in logEntries)
        {
            string log = FileName(entry); // edbXXXXX.log, XXXXX in hex
            uint gen = Convert.ToUInt32(log.Substring(3, log.Length - 7), 16);
            low = Math.Min(low, gen);
            high = Math.Max(high, gen);
        }
        Console.WriteLine("backup set: logs {0}..{1}", low, high);

        // Certificate Services stopped, then the disk is lost.
        Check("CertSrvServerControlW", PInvoke.CertSrvServerControlW(serverName, PInvoke.CSCONTROL_SHUTDOWN, null, null));
        Expect("CertSrvIsServerOnlineW (stopped)", PInvoke.CertSrvIsServerOnlineW(serverName, &online), new HRESULT(unchecked((int)0x800706BA)));
        Check("certemu_ca_wipe_files", CertEmu.certemu_ca_wipe_files(ca));

        // The saved locations: 'D' database, 0x82 log directory, 0x83 checkpoint directory.
        string database = null, logDir = null, systemDir = null;
        foreach (string entry in locationEntries)
        {
            if (entry[0] == 'D') database = entry.Substring(1);
            else if (entry[0] == '\u0082') logDir = entry.Substring(1);
            else if (entry[0] == '\u0083') systemDir = entry.Substring(1);
        }
        File.Copy(Path.Combine(backupDir, FileName(database)), CertEmu.HostPath(ca, database), true);
        string hostLogDir = CertEmu.HostPath(ca, logDir);
        Directory.CreateDirectory(hostLogDir);
        foreach (string entry in logEntries)
            File.Copy(Path.Combine(backupDir, FileName(entry)), Path.Combine(hostLogDir, FileName(entry)), true);

        // The registration.
        void* restore = null;
        Check("CertSrvRestorePrepareW", PInvoke.CertSrvRestorePrepareW(serverName, PInvoke.CSRESTORE_TYPE_FULL, &restore));
        fixed (char* db = database)
        fixed (char* log = logDir)
        fixed (char* sys = systemDir)
        {
            CSEDB_RSTMAPW* map = stackalloc CSEDB_RSTMAPW[1];
            map[0].pwszDatabaseName = new PWSTR(db);
            map[0].pwszNewDatabaseName = new PWSTR(db);
            Check("CertSrvRestoreRegisterW", PInvoke.CertSrvRestoreRegisterW(restore, new PCWSTR(sys), new PCWSTR(log), map, 1, new PCWSTR(log), low, high));
        }
        Check("CertSrvRestoreRegisterComplete", PInvoke.CertSrvRestoreRegisterComplete(restore, HRESULT.S_OK));
        Check("CertSrvRestoreEnd", PInvoke.CertSrvRestoreEnd(restore));

        // The start recovers the restored database and logs.
        Check("certemu_ca_start", CertEmu.certemu_ca_start(ca));
        Check("CertSrvIsServerOnlineW", PInvoke.CertSrvIsServerOnlineW(serverName, &online));
        string after = CertEmu.Report(ca);
        long recordsAfter = CertEmu.Number(after, "record_count");
        long revokedAfter = CertEmu.Number(after, "revoked_count");
        Console.WriteLine("online {0}; records {1} -> {2}, revoked {3} -> {4}", (bool)online, records, recordsAfter, revoked, revokedAfter);
        if (!online || recordsAfter != records || revokedAfter != revoked) failures++;
        Console.WriteLine("failures {0}", failures);
        Console.WriteLine("report: {0}", after);
        Check("certemu_ca_destroy", CertEmu.certemu_ca_destroy(ca));
        return failures == 0 ? 0 : 1;
    }
}
