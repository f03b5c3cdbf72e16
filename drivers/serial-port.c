/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Serial port set-up shared by the drivers that do their own serial I/O (serial-port.h).
 * Thread: the bus thread that owns the port.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "config/config.h"
#include "drivers/serial-port.h"

static speed_t baud_to_speed(int baud)
{
    switch (baud) {
    case 50: return B50;
    case 75: return B75;
    case 110: return B110;
    case 134: return B134;
    case 150: return B150;
    case 200: return B200;
    case 300: return B300;
    case 600: return B600;
    case 1200: return B1200;
    case 1800: return B1800;
    case 2400: return B2400;
    case 4800: return B4800;
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 500000: return B500000;
    case 576000: return B576000;
    case 921600: return B921600;
    case 1000000: return B1000000;
    case 1152000: return B1152000;
    case 1500000: return B1500000;
    case 2000000: return B2000000;
    case 2500000: return B2500000;
    case 3000000: return B3000000;
    case 3500000: return B3500000;
    case 4000000: return B4000000;
    default: return B9600; /* the configuration only admits the rates above */
    }
}

int serial_port_open(const struct bus_config *c)
{
    struct termios tio;
    speed_t speed = baud_to_speed(c->baud);
    int fd, r;

    fd = open(c->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* Keep other programs off the port while we own it. */
    (void)ioctl(fd, TIOCEXCL);
    if (tcgetattr(fd, &tio) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    cfmakeraw(&tio);
    cfsetispeed(&tio, speed);
    cfsetospeed(&tio, speed);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cflag |= c->data_bits == 5 ? CS5 : c->data_bits == 6 ? CS6 : c->data_bits == 7 ? CS7 : CS8;
    if (c->parity == 'E')
        tio.c_cflag |= PARENB;
    else if (c->parity == 'O')
        tio.c_cflag |= PARENB | PARODD;
    if (c->stop_bits == 2)
        tio.c_cflag |= CSTOPB;
    /* VMIN 1 with O_NONBLOCK: an empty port reads as EAGAIN and 0 means hang-up. (With
     * VMIN 0 and VTIME 0 Linux returns 0 for "no data", indistinguishable from EOF.) */
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &tio) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    tcflush(fd, TCIOFLUSH);
    return fd;
}
