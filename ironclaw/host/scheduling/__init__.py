"""Scheduled tasks: recurrence rules, the ``schedules`` store, and firing due tasks.
"""

from .recurrence import InvalidSchedule as InvalidSchedule
from .recurrence import Recurrence as Recurrence
from .recurrence import next_slot as next_slot
from .recurrence import parse_recurrence as parse_recurrence
from .recurrence import parse_timezone as parse_timezone
from .scheduler import Scheduler as Scheduler
from .scheduler import TaskChanged as TaskChanged
from .scheduler import TaskCreated as TaskCreated
from .scheduler import TaskFired as TaskFired
from .scheduler import TaskFireFailed as TaskFireFailed
from .tasks import Task as Task
from .tasks import TaskConflict as TaskConflict
from .tasks import TaskLimit as TaskLimit
from .tasks import TaskNotFound as TaskNotFound
from .tasks import TaskStatus as TaskStatus
