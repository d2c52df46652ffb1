// nodeboot's service host: lets the Service Control Manager run a PowerShell script
// as a service (sc.exe cannot: powershell.exe does not answer the SCM, which gives up
// with error 1053). Usage as a binPath: nodeboot-service-host.exe NAME SCRIPT.ps1
// The script runs as a child; stopping the service ends the child's whole tree; a
// child that exits on its own ends this process with exit 1, so the service's
// failure actions (restart after 10 s) apply.
using System;
using System.Diagnostics;
using System.ServiceProcess;

public class NodebootServiceHost : ServiceBase
{
    private readonly string script;
    private Process child;
    private volatile bool stopping;

    public NodebootServiceHost(string name, string script)
    {
        ServiceName = name;
        this.script = script;
        CanStop = true;
        CanShutdown = true;
    }

    protected override void OnStart(string[] args)
    {
        string shell = Environment.ExpandEnvironmentVariables(@"%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe");
        ProcessStartInfo info = new ProcessStartInfo(shell,
            "-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \"" + script + "\"");
        info.UseShellExecute = false;
        child = Process.Start(info);
        child.EnableRaisingEvents = true;
        child.Exited += delegate
        {
            if (!stopping) { Environment.Exit(1); }
        };
    }

    protected override void OnStop() { EndChild(); }

    protected override void OnShutdown() { EndChild(); }

    private void EndChild()
    {
        stopping = true;
        if (child == null || child.HasExited) { return; }
        Process kill = Process.Start(new ProcessStartInfo("taskkill.exe", "/T /F /PID " + child.Id) { UseShellExecute = false });
        kill.WaitForExit(30000);
    }

    public static void Main(string[] args)
    {
        if (args.Length != 2) { Console.Error.WriteLine("usage: nodeboot-service-host.exe NAME SCRIPT.ps1"); Environment.Exit(2); }
        ServiceBase.Run(new NodebootServiceHost(args[0], args[1]));
    }
}
