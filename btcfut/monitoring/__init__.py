"Monitoring of the live loop, one chapter per module (`nbs/08_monitoring.*`): circuit breakers, Prometheus metrics, the health server; importing it loads every chapter."
from .breakers import *
from .metrics import *
from .server import *
