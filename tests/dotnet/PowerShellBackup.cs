// A CA backup in the style of the PowerShell function Backup-CertificationAuthority that is
// copied into many repositories (research: clients.md §3.1). Written for this test suite,
// not copied: the declarations are those the script hands to
// `Add-Type -MemberDefinition ... -Namespace PKI -Name CertAdm`, and Main does what the
// script's body does, call for call:
//
//   * DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true) and the
//     un-suffixed names; on Linux, Mono and .NET look these names up as written and pass
//     the strings as UTF-8 (the .NET entry set, libcertadm.so, exports them);
//   * CertSrvIsServerOnline declared as returning bool, its return value ignored: only
//     pfServerOnline is looked at;
//   * Full: Prepare(server, 0, 1), RestoreGetDatabaseLocations (result not checked, the
//     raw bytes saved as DataBase\certbkxp.dat), GetDatabaseNames, each file; then the
//     logs, TruncateLogs, End. Incremental: Prepare(server, 0, 2), the logs, End, and
//     never a truncation;
//   * one 512 KiB buffer from AllocHGlobal, 524288 also as cbReadHintSize; the end of a
//     file is a short read, and nothing else (the file size is never compared);
//   * lists decoded from their raw UTF-16LE bytes, split on NUL, the first character of
//     each entry dropped unseen; lists are never freed (CertSrvBackupFree is declared and
//     never called);
//   * CertSrvBackupEnd is reached through the status helper, on the success path and on
//     the failure path, with whatever phbc holds: IntPtr.Zero when Prepare failed.
//
// Usage: PowerShellBackup.exe SERVER (DIR Full|Incremental)...
// Prints one line per call, "<function> 0x<HRESULT>", and a status line per backup. Exit
// code: 0 if every backup ran to its end, 1 if one stopped at a failure.

using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace PKI
{
    public class CertAdm
    {
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern bool CertSrvIsServerOnline(string pwszServerName, ref bool pfServerOnline);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupPrepare(string pwszServerName, uint grbitJet, uint dwBackupFlags, ref IntPtr phbc);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvRestoreGetDatabaseLocations(IntPtr hbc, ref IntPtr ppwszzDatabaseLocationList, ref uint pcbSize);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupGetDatabaseNames(IntPtr hbc, ref IntPtr ppwszzAttachmentInformation, ref uint pcbSize);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupGetDynamicFileList(IntPtr hbc, ref IntPtr ppwszzFileList, ref uint pcbSize);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupOpenFile(IntPtr hbc, string pwszAttachmentName, uint cbReadHintSize, ref long pliFileSize);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupRead(IntPtr hbc, IntPtr pvBuffer, uint cbBuffer, ref uint pcbRead);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupClose(IntPtr hbc);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupGetBackupLogs(IntPtr hbc, ref IntPtr ppwszzBackupLogFiles, ref uint pcbSize);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupTruncateLogs(IntPtr hbc);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern int CertSrvBackupEnd(IntPtr hbc);
        [DllImport("Certadm.dll", CharSet = CharSet.Auto, SetLastError = true)]
        public static extern void CertSrvBackupFree(IntPtr pv);
    }
}

public static class BackupCertificationAuthority
{
    const uint cbBuffer = 524288;

    static int Show(string function, int hresult)
    {
        Console.WriteLine("{0} 0x{1:X8}", function, hresult);
        return hresult;
    }

    // The script's status helper: reports, and ends the session whatever phbc holds.
    static int Status(string step, int hresult, IntPtr phbc)
    {
        Console.WriteLine("status {0} 0x{1:X8}", step, hresult);
        Show("CertSrvBackupEnd", PKI.CertAdm.CertSrvBackupEnd(phbc));
        return hresult;
    }

    // The raw pcbSize bytes of a list.
    static byte[] RawList(IntPtr list, uint pcbSize)
    {
        byte[] bytes = new byte[pcbSize];
        if (list != IntPtr.Zero && pcbSize > 0)
            Marshal.Copy(list, bytes, 0, (int)pcbSize);
        return bytes;
    }

    // The script's Split-BackupPath: UTF-16LE bytes, split on NUL, empty entries dropped.
    static string[] SplitBackupPath(byte[] bytes)
    {
        string text = Encoding.Unicode.GetString(bytes);
        return text.Split(new char[] { '\0' }, StringSplitOptions.RemoveEmptyEntries);
    }

    // Opens, reads to the first short read and closes one file; the destination is named
    // after the last component of the (UNC) path, as Get-Item names it.
    static int BackupFile(IntPtr phbc, string file, string dir, IntPtr buffer)
    {
        file = file.Substring(1, file.Length - 1);
        long size = 0;
        int hresult = Show("CertSrvBackupOpenFile", PKI.CertAdm.CertSrvBackupOpenFile(phbc, file, cbBuffer, ref size));
        if (hresult != 0) return hresult;
        string name = file.Substring(file.LastIndexOf('\\') + 1);
        using (FileStream fs = new FileStream(Path.Combine(dir, name), FileMode.Create, FileAccess.Write))
        {
            byte[] managed = new byte[cbBuffer];
            bool last = false;
            int reads = 0;
            while (!last)
            {
                uint pcbRead = 0;
                hresult = PKI.CertAdm.CertSrvBackupRead(phbc, buffer, cbBuffer, ref pcbRead);
                reads++;
                if (hresult != 0) { Show("CertSrvBackupRead", hresult); return hresult; }
                Marshal.Copy(buffer, managed, 0, (int)pcbRead);
                fs.Write(managed, 0, (int)pcbRead);
                if (pcbRead < cbBuffer) { last = true; }
            }
            Console.WriteLine("CertSrvBackupRead 0x00000000 x{0}: {1} of {2} bytes", reads, fs.Length, size);
        }
        return Show("CertSrvBackupClose", PKI.CertAdm.CertSrvBackupClose(phbc));
    }

    static int Backup(string server, string path, string type)
    {
        bool serverStatus = false;
        PKI.CertAdm.CertSrvIsServerOnline(server, ref serverStatus); // the bool return is ignored
        Console.WriteLine("CertSrvIsServerOnline online={0}", serverStatus);
        if (!serverStatus)
        {
            Console.WriteLine("status IsServerOnline 0x800706BA");
            return unchecked((int)0x800706BA);
        }
        IntPtr phbc = IntPtr.Zero;
        uint flags = type == "Full" ? 1u : 2u;
        int hresult = Show("CertSrvBackupPrepare", PKI.CertAdm.CertSrvBackupPrepare(server, 0, flags, ref phbc));
        if (hresult != 0) return Status("Prepare", hresult, phbc);

        string dir = Path.Combine(path, "DataBase");
        Directory.CreateDirectory(dir);
        IntPtr buffer = Marshal.AllocHGlobal((int)cbBuffer);
        try
        {
            uint pcbSize = 0;
            if (type == "Full")
            {
                IntPtr locations = IntPtr.Zero;
                Show("CertSrvRestoreGetDatabaseLocations", PKI.CertAdm.CertSrvRestoreGetDatabaseLocations(phbc, ref locations, ref pcbSize));
                File.WriteAllBytes(Path.Combine(dir, "certbkxp.dat"), RawList(locations, pcbSize));

                IntPtr names = IntPtr.Zero;
                pcbSize = 0;
                hresult = Show("CertSrvBackupGetDatabaseNames", PKI.CertAdm.CertSrvBackupGetDatabaseNames(phbc, ref names, ref pcbSize));
                if (hresult != 0 || pcbSize == 0) return Status("GetDatabaseNames", hresult != 0 ? hresult : unchecked((int)0x80070012), phbc);
                foreach (string file in SplitBackupPath(RawList(names, pcbSize)))
                {
                    hresult = BackupFile(phbc, file, dir, buffer);
                    if (hresult != 0) return Status("BackupFile", hresult, phbc);
                }
            }
            IntPtr logs = IntPtr.Zero;
            pcbSize = 0;
            hresult = Show("CertSrvBackupGetBackupLogs", PKI.CertAdm.CertSrvBackupGetBackupLogs(phbc, ref logs, ref pcbSize));
            if (hresult != 0) return Status("GetBackupLogs", hresult, phbc);
            foreach (string file in SplitBackupPath(RawList(logs, pcbSize)))
            {
                hresult = BackupFile(phbc, file, dir, buffer);
                if (hresult != 0) return Status("BackupFile", hresult, phbc);
            }
            if (type == "Full")
            {
                hresult = Show("CertSrvBackupTruncateLogs", PKI.CertAdm.CertSrvBackupTruncateLogs(phbc));
                if (hresult != 0) return Status("TruncateLogs", hresult, phbc);
            }
            return Status(type, 0, phbc);
        }
        finally
        {
            Marshal.FreeHGlobal(buffer);
        }
    }

    public static int Main(string[] args)
    {
        if (args.Length < 3 || args.Length % 2 != 1)
        {
            Console.Error.WriteLine("usage: PowerShellBackup.exe SERVER (DIR Full|Incremental)...");
            return 2;
        }
        int failed = 0;
        for (int i = 1; i < args.Length; i += 2)
        {
            Console.WriteLine("== {0} backup of {1} to {2}", args[i + 1], args[0], args[i]);
            if (Backup(args[0], args[i], args[i + 1]) != 0) failed = 1;
        }
        return failed;
    }
}
