"""abtrack_ros.commands"""
