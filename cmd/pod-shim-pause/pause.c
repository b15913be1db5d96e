/*
 * pod-shim-pause: the pod's PID 1. It holds the pod's namespaces open, reaps
 * every orphan that is reparented to it (shared PID namespace), and exits
 * cleanly on SIGINT/SIGTERM. Written in C and linked statically because one
 * runs per pod: it must cost a few hundred KiB, not the megabytes of a Go
 * runtime.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { _exit(0); }

static void on_child(int sig) {
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pod-shim-pause\n");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "warning: pause is not PID 1; it will not reap orphans of the pod\n");

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return 1;
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return 2;

	for (;;)
		pause();
	return 42;
}
