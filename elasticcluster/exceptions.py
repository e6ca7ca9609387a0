"""Every error elasticcluster raises on purpose.

Each carries what the user needs to fix the problem; the CLI turns them into
one message and an exit status (``exit_status``) in one place.
"""


class ElasticClusterError(Exception):
    """Base of all elasticcluster errors."""

    exit_status = 1


class ConfigurationError(ElasticClusterError):
    """The configuration (files or command line) is wrong; exit status 2.

    ``problems`` lists one message per problem, each naming file, section
    and key where known.
    """

    exit_status = 2

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return "\n".join([head, *("  - " + p for p in self.problems)])


class UsageError(ConfigurationError):
    """A command-line argument is wrong (also exit status 2)."""


class ClusterNotFound(ElasticClusterError):
    """No stored cluster has this name."""

    exit_status = 2


class ClusterExists(ElasticClusterError):
    """A cluster of this name is already stored."""

    exit_status = 2


class StateFileError(ElasticClusterError):
    """A cluster's state file cannot be read, parsed or written.

    The file is never overwritten or removed because of this error.
    """

    exit_status = 2

    def __init__(self, path: str, reason: str):
        super().__init__(f"state file {path}: {reason}")
        self.path = path
        self.reason = reason


class ClusterLocked(ElasticClusterError):
    """Another elasticcluster command holds this cluster's lock."""


class NodeNotFound(ElasticClusterError):
    """No node of the cluster matches (e.g. no valid frontend node)."""

    exit_status = 2


class NotAvailableYet(ElasticClusterError):
    """The command exists but this version cannot do it yet."""


class CloudError(ElasticClusterError):
    """The cloud refused or failed a request (bad credentials, unknown image, ...)."""


class QuotaExceeded(CloudError):
    """The cloud has no room for more nodes (quota, capacity)."""


class TransientCloudError(CloudError):
    """A failure worth retrying (throttling, 5xx, connection reset)."""


class StartupTimeout(CloudError):
    """Nodes did not reach the expected state in time."""


class SetupFailed(ElasticClusterError):
    """The setup (ansible-playbook) failed on some hosts, or did not run."""


class Cancelled(ElasticClusterError):
    """The user answered no to a confirmation: nothing was changed."""


class ClusterChanged(ElasticClusterError):
    """Another command changed the cluster between a confirmation and the change."""


class Interrupted(ElasticClusterError):
    """The user interrupted a command (Ctrl-C: exit status 130; SIGTERM: 143); state was saved."""

    exit_status = 130

    def __init__(self, message: str, terminated: bool = False):
        super().__init__(message)
        if terminated:
            self.exit_status = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt while an operation runs."""
